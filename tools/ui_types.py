"""`make ui-types`: write the plugin's OpenAPI schema to the page's folder and generate the page's
TypeScript types from it, so the page and the API cannot drift apart.

    plugins/supabase_backup_plugin/ui/openapi.json        create_app().openapi(), no Airflow running
    plugins/supabase_backup_plugin/ui/src/openapi.gen.ts  openapi-typescript (pinned in the lock file)

Both files are committed; tests/plugin/test_ui_artifacts.py fails when either is stale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
UI_FOLDER = PROJECT_ROOT / "plugins" / "supabase_backup_plugin" / "ui"
OPENAPI_JSON = UI_FOLDER / "openapi.json"
TYPES_TS = UI_FOLDER / "src" / "openapi.gen.ts"
OPENAPI_TYPESCRIPT = UI_FOLDER / "node_modules" / ".bin" / "openapi-typescript"


class UiToolMissing(Exception):
    """The page's npm packages are not installed: run `npm ci` in plugins/supabase_backup_plugin/ui."""


def openapi_json() -> str:
    """The plugin app's OpenAPI schema as the committed file holds it (indented, newline-ended)."""
    # Importing the plugin imports Airflow, which writes an airflow.cfg into AIRFLOW_HOME: a
    # throwaway one, unless the caller (a test session) has set its own.
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="supabase-backup-ui-types-"))
    for folder in (PROJECT_ROOT / "include", PROJECT_ROOT / "plugins"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    # Imported here, not at the top: it pulls in Airflow (about 10 s), which only this function needs.
    from supabase_backup_plugin.app import create_app

    return json.dumps(create_app().openapi(), indent=2, ensure_ascii=False) + "\n"


def generate_types(openapi_path: Path, types_path: Path) -> None:
    """Run openapi-typescript on ``openapi_path``, writing ``types_path``."""
    if not OPENAPI_TYPESCRIPT.exists():
        raise UiToolMissing(UiToolMissing.__doc__)
    # --default-non-nullable false: a request field with a default may be left out (the server
    # fills it in). A reply's fields are all required by the schema itself (schemas.ResponseBody).
    command = [str(OPENAPI_TYPESCRIPT), str(openapi_path), "--default-non-nullable", "false"]
    subprocess.run(
        [*command, "--output", str(types_path)],
        cwd=UI_FOLDER,
        check=True,
        capture_output=True,
    )


def main() -> int:
    OPENAPI_JSON.write_text(openapi_json(), encoding="utf-8")
    try:
        generate_types(OPENAPI_JSON, TYPES_TS)
    except UiToolMissing as missing:
        print(missing, file=sys.stderr)
        return 1
    print(
        f"wrote {OPENAPI_JSON.relative_to(PROJECT_ROOT)} and {TYPES_TS.relative_to(PROJECT_ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
