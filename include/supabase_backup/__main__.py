"""Command line: ``python -m supabase_backup verify ARCHIVE.zip``.

Checks a downloaded archive against its manifest (every member present, no stranger, every size
and sha256) without Airflow. Exit status 0 when the archive is intact, 1 when it is not.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from supabase_backup.errors import BackupError
from supabase_backup.verify import verify_archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m supabase_backup", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check an archive against its manifest")
    verify.add_argument("archive", help="path of a backup-….zip")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = verify_archive(arguments.archive)
    except BackupError as error:
        print(f"NOT OK: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
