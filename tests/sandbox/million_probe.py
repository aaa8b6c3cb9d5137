"""Run one of the library's bounded-memory paths in a fresh process and report its memory as JSON.

    python tests/sandbox/million_probe.py listing|inventory|reconcile SPEC.json

``rss_growth_mib`` is this process's VmHWM minus its RSS after imports: what the path itself held,
whatever the interpreter and its imports took. (ru_maxrss is not used: Linux carries it over exec.)
Used by test_sandbox_bulk.py at a million objects; never a timing measurement.
"""

from __future__ import annotations

import json
import sys


def rss_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    path, spec_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as spec_file:
        spec = json.load(spec_file)
    import psycopg

    from supabase_backup.sources.api_client import ApiSettings, open_client
    from supabase_backup.sources.database import write_storage_inventory
    from supabase_backup.sources.reconcile import reconcile_bucket
    from supabase_backup.staging import StagingArea
    from supabase_backup.sources.storage_listing import list_objects

    staging = StagingArea.at(f"file://{spec['staging']}")
    staging.run_folder.exists()  # loads the filesystem implementation before the baseline
    after_imports = rss_mib("VmRSS")
    result: dict = {}
    if path == "listing":
        count, in_order, previous = 0, True, ""
        with open_client(ApiSettings(spec["api_url"], spec["service_key"])) as client:
            listing = list_objects(client, spec["bucket"])
            for listed in listing:
                count += 1
                in_order = in_order and listed.key > previous
                previous = listed.key
        result = {"objects": count, "method": listing.method, "in_order": in_order, "last": previous}
    elif path == "inventory":
        with psycopg.connect(spec["db_url"]) as connection:
            result = {"objects": write_storage_inventory(connection, staging, [spec["bucket"]])[spec["bucket"]]}
    elif path == "reconcile":
        def fetch_missing(bucket, keys):
            raise AssertionError(f"{len(keys)} objects were not exported")

        result = reconcile_bucket(staging, spec["bucket"], have_inventory=True, fetch_missing=fetch_missing,
                                  keys_still_present=lambda bucket, keys: set(keys))
    else:
        raise SystemExit(f"unknown path {path}")
    result["rss_growth_mib"] = round(rss_mib("VmHWM") - after_imports, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
