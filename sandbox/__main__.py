"""CLI: python -m sandbox up|down|env|status (run from the project root)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox",
                                     description="Local Supabase stand-in (Postgres + Storage/Auth API + S3).")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p_up = sub.add_parser("up", help="start (idempotent) and print the settings as export lines")
    p_up.add_argument("--size", choices=["small", "medium"], default="small")
    p_up.add_argument("--state-dir", default=runtime.DEFAULT_STATE_DIR)
    p_up.add_argument("--objects-dir", help="also load a local tree: one subfolder per bucket")
    p_up.add_argument("--users-file", help="also load users from a JSON array of {email, ...}")
    p_up.add_argument("--list-v2", dest="list_v2", action=argparse.BooleanOptionalAction, default=None,
                      help="--no-list-v2 makes list-v2 answer FeatureNotEnabled (default: enabled)")
    p_up.add_argument("--bulk-objects", type=int, metavar="N",
                      help="also create a synthetic bulk bucket of N objects: rows only, bytes made on GET")
    p_up.add_argument("--bulk-bucket", default="bulk", metavar="NAME", help="its name (default: bulk)")
    p_up.add_argument("--bulk-size", type=int, default=1024, metavar="BYTES",
                      help="bytes per bulk object (default 1024)")
    p_up.add_argument("--bulk-seed", type=int, default=0, metavar="S", help="seed of the bulk bytes (default 0)")

    p_down = sub.add_parser("down", help="stop everything (keeps data unless --purge)")
    p_down.add_argument("--state-dir", default=runtime.DEFAULT_STATE_DIR)
    p_down.add_argument("--purge", action="store_true", help="also delete the state dir")

    p_env = sub.add_parser("env", help="print the export lines")
    p_env.add_argument("--state-dir", default=runtime.DEFAULT_STATE_DIR)

    p_status = sub.add_parser("status", help="show what is running (JSON)")
    p_status.add_argument("--state-dir", default=runtime.DEFAULT_STATE_DIR)

    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            t0 = time.time()
            settings = runtime.up(args.state_dir, size=args.size, objects_dir=args.objects_dir,
                                  users_file=args.users_file, list_v2=args.list_v2, quiet=False,
                                  bulk_objects=args.bulk_objects, bulk_bucket=args.bulk_bucket,
                                  bulk_size=args.bulk_size, bulk_seed=args.bulk_seed)
            sys.stdout.write(runtime.env_lines(settings))
            print(f"# sandbox ready in {time.time() - t0:.1f}s; state dir {settings['state_dir']}; "
                  f"source {settings['state_dir']}/env.sh", file=sys.stderr)
        elif args.cmd == "down":
            runtime.down(args.state_dir, purge=args.purge)
        elif args.cmd == "env":
            sys.stdout.write(runtime.env_lines(runtime.load_settings(args.state_dir)))
        elif args.cmd == "status":
            print(json.dumps(runtime.status(args.state_dir), indent=2))
    except runtime.SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
