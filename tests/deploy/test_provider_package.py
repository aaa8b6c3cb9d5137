"""The built wheel, installed into an Airflow venv that has no other copy of the project, registers
the provider (the `supabase` connection type, the notifier) and the Backups plugin through its entry
points, as `airflow providers list`, `airflow providers hooks` and `airflow plugins` show; and a
deployment that also keeps the plugin in its plugins folder gets it registered once.

The venv is the project's own set of packages without the project: a new venv whose site-packages
links every entry of this venv's except the project's editable install, so the copy under test can
only be the wheel's (a fresh `pip install` of Airflow would take minutes for the same packages)."""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

MIGRATION = PROJECT_ROOT / "include" / "sql" / "001_backup_system.sql"
BUNDLE = PROJECT_ROOT / "plugins" / "supabase_backup_plugin" / "ui" / "dist" / "backups.js"
# This venv's own install of the project (editable: a .pth or finder and its dist-info).
PROJECT_INSTALL = re.compile(r"^(__editable__[._]+)?supabase_backup[-_.]")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy of what the package is made of: an in-tree build would leave build/ in
    # the checkout. symlinks=True keeps include/supabase_backup/sql's link a link, as in git.
    source = tmp_path_factory.mktemp("package-source")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "node_modules")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    shutil.copytree(PROJECT_ROOT / "include", source / "include", symlinks=True, ignore=ignore)
    shutil.copytree(PROJECT_ROOT / "plugins", source / "plugins", symlinks=True, ignore=ignore)
    wheels = tmp_path_factory.mktemp("wheels")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--no-deps", str(source), "-w", str(wheels)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    (built,) = wheels.glob("supabase_backup-*.whl")
    return built


@pytest.fixture(scope="module")
def airflow_venv(tmp_path_factory, wheel) -> Path:
    venv = tmp_path_factory.mktemp("airflow-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    theirs = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )
    for entry in ours.iterdir():
        if not PROJECT_INSTALL.match(entry.name):
            (theirs / entry.name).symlink_to(entry)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
         "--disable-pip-version-check", "--no-deps", str(wheel)],
        capture_output=True, text=True, env=environment(tmp_path_factory.mktemp("pip-home")),
    )
    assert install.returncode == 0, install.stderr
    return venv


def environment(airflow_home: Path, plugins_folder: Path | None = None, **settings: str) -> dict:
    """A clean Airflow environment: no AIRFLOW_* of the test process, nothing on PYTHONPATH."""
    empty = airflow_home / "empty"
    empty.mkdir(exist_ok=True)
    clean = {name: value for name, value in os.environ.items()
             if not name.startswith("AIRFLOW") and name != "PYTHONPATH"}
    return {
        **clean,
        "PYTHONPATH": "",
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(empty),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder or empty),
        **settings,
    }


def run(venv: Path, env: dict, *arguments: str) -> str:
    result = subprocess.run([str(venv / "bin" / "python"), *arguments], capture_output=True,
                            text=True, env=env, cwd=env["AIRFLOW_HOME"])
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def airflow_json(venv: Path, env: dict, *command: str) -> list[dict]:
    output = run(venv, env, "-m", "airflow", *command, "--output", "json")
    return json.loads(output[output.index("["):])


def test_the_wheel_holds_the_plugin_its_page_and_the_migration(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("supabase_backup/sql/001_backup_system.sql") == MIGRATION.read_bytes()
        assert archive.read("supabase_backup_plugin/ui/dist/backups.js") == BUNDLE.read_bytes()
        entry_points = next(archive.read(name).decode() for name in names
                            if name.endswith(".dist-info/entry_points.txt"))
    assert {"supabase_backup_plugin/__init__.py", "supabase_backup_plugin/app.py",
            "supabase_backup/airflow/provider.py",
            "supabase_backup/airflow/supabase_hook.py"} <= names
    # The plugins folder's loader is a deployment file, not part of the package.
    assert not any("load_supabase_backup_plugin" in name for name in names)
    assert "provider_info = supabase_backup.airflow.provider:get_provider_info" in entry_points
    assert "supabase_backup = supabase_backup_plugin:SupabaseBackupPlugin" in entry_points


def test_airflow_lists_the_provider_its_connection_type_and_notifier(airflow_venv, tmp_path):
    env = environment(tmp_path)
    providers = airflow_json(airflow_venv, env, "providers", "list")
    (ours,) = [row for row in providers if row["package_name"] == "supabase-backup"]
    assert ours["version"] == "0.1.0"
    # What `airflow providers hooks` and the connection form read, in one Airflow process.
    found = json.loads(run(airflow_venv, env, "-c", REGISTRY).strip().splitlines()[-1])
    assert found["files"][0].startswith(str(airflow_venv))  # the wheel's copy, not include/
    assert found["files"][1].startswith(str(airflow_venv))
    assert found["distributions"] == 1
    assert found["hook"] == ["supabase_backup.airflow.supabase_hook.SupabaseHook", "Supabase"]
    assert "supabase_backup.airflow.alerting.BackupAlertNotifier" in found["notifications"]
    # The connection form as the Airflow UI gets it (GET /ui/connections/hook_meta).
    standard, extra = found["form"]["standard_fields"], found["form"]["extra_fields"]
    assert (standard["host"]["title"], standard["password"]["title"]) == (
        "Project URL", "Service key")
    assert all(standard[name]["hidden"] for name in ("login", "port", "url_schema"))
    assert {name: field["schema"]["title"] for name, field in extra.items()} == {
        "database_url": "Database URL (session pooler)",
        "management_token": "Management API token",
    }
    assert {field["schema"]["format"] for field in extra.values()} == {"password"}


REGISTRY = (
    "import json, importlib.metadata as metadata;"
    "import supabase_backup, supabase_backup_plugin;"
    "from airflow.providers_manager import ProvidersManager;"
    "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService;"
    "manager = ProvidersManager(); hook = manager.hooks['supabase'];"
    "(form,) = [meta.model_dump() for meta in HookMetaService.hook_meta_data()"
    "           if meta.connection_type == 'supabase'];"
    "print(json.dumps({"
    " 'files': [supabase_backup.__file__, supabase_backup_plugin.__file__],"
    " 'distributions': len([d for d in metadata.distributions() if d.name == 'supabase-backup']),"
    " 'hook': [hook.hook_class_name, hook.hook_name],"
    " 'notifications': list(manager.notification),"
    " 'form': form}))"
)


def test_airflow_lists_the_plugin_from_the_entry_point(airflow_venv, tmp_path):
    plugins = airflow_json(airflow_venv, environment(tmp_path), "plugins")
    (ours,) = [plugin for plugin in plugins if plugin["name"] == "supabase_backup"]
    assert "supabase-backup==0.1.0" in ours["source"] and "airflow.plugins" in ours["source"]
    assert {app["name"] for app in ours["react_apps"]} == {"Backups"}
    assert [app["url_prefix"] for app in ours["fastapi_apps"]] == ["/backup"]


REGISTERED = (
    "from airflow import plugins_manager;"
    "plugins, errors = plugins_manager._get_plugins();"
    "import json; print(json.dumps({'names': [p.name for p in plugins], 'errors': errors}))"
)


@pytest.mark.parametrize("lazy_providers", ["True", "False"])
def test_a_plugins_folder_copy_beside_the_package_registers_the_plugin_once(
    airflow_venv, tmp_path, lazy_providers
):
    # The Astro-style layout: the project's plugins/ copied into the deployment's plugins folder.
    plugins_folder = tmp_path / "plugins"
    shutil.copytree(PROJECT_ROOT / "plugins", plugins_folder,
                    ignore=shutil.ignore_patterns("__pycache__", "node_modules", "ui"))
    env = environment(tmp_path, plugins_folder,
                      AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS=lazy_providers)
    registered = json.loads(run(airflow_venv, env, "-c", REGISTERED).strip().splitlines()[-1])
    assert registered == {"names": ["supabase_backup"], "errors": {}}
