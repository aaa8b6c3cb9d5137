"""The page's committed artifacts are what their sources produce: openapi.json is the plugin app's
schema, src/openapi.gen.ts is generated from it, dist/backups.js is the bundle the sources build
(byte for byte); eslint and the component test pass. Installs the page's npm packages (npm ci)
when node_modules is missing, as on a fresh clone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from supabase_backup.records import history
from supabase_backup_plugin.schemas import HistoryRow
from tools import ui_types

UI = ui_types.UI_FOLDER
BUNDLE = UI / "dist" / "backups.js"


def npm(*arguments: str) -> subprocess.CompletedProcess:
    """npm in the page's folder; the failure message carries npm's own output."""
    if shutil.which("npm") is None:
        pytest.fail("npm is not installed: the Backups page needs Node 20 and npm")
    done = subprocess.run(
        ["npm", *arguments],
        cwd=UI,
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "1", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, (
        f"npm {' '.join(arguments)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


@pytest.fixture(scope="module")
def node_modules():
    if not (UI / "node_modules" / ".package-lock.json").exists():
        npm("ci", "--no-audit", "--no-fund")


def test_committed_openapi_json_is_the_apps_schema():
    assert ui_types.OPENAPI_JSON.read_text(encoding="utf-8") == ui_types.openapi_json(), (
        "plugins/supabase_backup_plugin/ui/openapi.json is stale: run `make ui-types` and commit it"
    )


def test_history_row_schema_declares_every_backup_history_column(small_sandbox):
    """The page's HistoryRow type comes from the schema: a column it lacks is unknown to the page."""
    with small_sandbox.connect() as connection:
        columns = {
            name
            for (name,) in connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = 'backup_history'"
            )
        }
        run_id = f"test__{uuid.uuid4()}"
        history.record_running(connection, run_id, "manual", triggered_by="admin")
        row = history.get_by_run_id(connection, run_id)
        # Removed again: the session's other tests share this database and its history.
        connection.execute("DELETE FROM public.backup_history WHERE run_id = %s", (run_id,))
    schema = json.loads(ui_types.OPENAPI_JSON.read_text(encoding="utf-8"))
    declared = set(schema["components"]["schemas"]["HistoryRow"]["properties"])
    assert columns - declared == set(), "declare these columns in schemas.HistoryRow"
    # A real row fits the declared types, and the reply carries every column.
    # Every column passes through; the fields read from Airflow come on top.
    assert set(HistoryRow.model_validate(row).model_dump(mode="json")) == columns | {
        "started_by", "run_started_at", "run_ended_at"}


@pytest.mark.slow
def test_committed_types_are_generated_from_openapi_json(node_modules, tmp_path):
    generated = tmp_path / "openapi.gen.ts"
    ui_types.generate_types(ui_types.OPENAPI_JSON, generated)
    assert ui_types.TYPES_TS.read_text(encoding="utf-8") == generated.read_text(encoding="utf-8"), (
        "plugins/supabase_backup_plugin/ui/src/openapi.gen.ts is stale: run `make ui-types`"
    )


# Slow: npm ci on a fresh clone, tsc and vite; together a minute or two on a busy machine.
@pytest.mark.slow
def test_committed_bundle_is_what_the_sources_build(node_modules, tmp_path):
    # `npm run build` type-checks, then vite builds; the extra argument goes to vite.
    npm("run", "build", "--", "--outDir", str(tmp_path))
    assert (tmp_path / "backups.js").read_bytes() == BUNDLE.read_bytes(), (
        "plugins/supabase_backup_plugin/ui/dist/backups.js is stale: run `make ui` and commit it"
    )


@pytest.mark.slow
def test_page_lints_clean(node_modules):
    npm("run", "lint")


@pytest.mark.slow
def test_page_component_test_passes(node_modules):
    npm("test")
