"""The ``supabase-backup`` command: one module per sub-command, no Airflow needed.

Each command module has ``register(commands)`` (adds its sub-parser) and ``run(arguments) -> int``.
Logging is configured here, when the command runs, never when a module is imported. A library
error ends the command with its class's exit code (``errors.EXIT_CODES_HELP``) and one sentence on
stderr, as BorgBackup does; the commands translate what they expect to fail (a refused or
unreachable database: ``cli.database_url``) into that tree, so no traceback is printed for it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from supabase_backup import __version__
from supabase_backup.cli import prune, restore, verify
from supabase_backup.errors import EXIT_CODES_HELP, EXIT_CONFIGURATION, BackupError

COMMANDS = (verify, restore, prune)

DESCRIPTION = """\
Check and restore backups made by supabase-backup (the Airflow DAG that packs a Supabase
project's database, Auth users and Storage objects into one zip on S3). Works without Airflow.

S3 locations (s3://bucket/key) use the usual AWS environment: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION or AWS_PROFILE, and AWS_ENDPOINT_URL for an
S3-compatible server."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # a usage error is a configuration error: exit 3, not 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIGURATION, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="supabase-backup",
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if arguments.verbose else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        return arguments.run(arguments)
    except BackupError as error:
        # An expected failure is one sentence and its exit code; -v adds the cause underneath
        # (psycopg's own words for a refused connection), still without a traceback.
        if error.__cause__ is not None:
            logging.getLogger(__name__).info(
                "caused by %s: %s", type(error.__cause__).__name__, error.__cause__
            )
        print(f"supabase-backup {arguments.command}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
