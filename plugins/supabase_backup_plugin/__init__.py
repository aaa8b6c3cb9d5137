"""The Backups plugin: a FastAPI app under ``/backup`` (trigger, progress, history, download URLs,
the enabled switch), the Backups page in the Airflow UI, and a listener that writes each backup
and drill run's outcome as the run's note in Airflow's own run view (``run_notes``).

Airflow mounts the app without authenticating it: every route checks the caller's Airflow
permissions on the ``supabase_backup`` DAG itself (``dependencies.py``).

Every Airflow process loads plugins, each task's process included; only the api-server asks for
``fastapi_apps``. So the app (FastAPI, the API server's security module, the metadata models) is
imported and built on that first request for it, not when a task starts.
"""

from __future__ import annotations

import functools

from airflow.plugins_manager import AirflowPlugin

from supabase_backup_plugin import run_notes

URL_PREFIX = "/backup"
# The page is a React component the Airflow UI loads from this URL (built by `make ui`).
BUNDLE_URL = f"{URL_PREFIX}/ui/static/backups.js"


@functools.cache
def backup_app():
    from supabase_backup_plugin.app import create_app

    return create_app()


class SupabaseBackupPlugin(AirflowPlugin):
    name = "supabase_backup"
    listeners = [run_notes]
    react_apps = [
        {
            "name": "Backups",
            "bundle_url": BUNDLE_URL,
            "destination": "nav",
            "url_route": "backups",
            "category": "browse",
        },
        {
            "name": "Backups",
            "bundle_url": BUNDLE_URL,
            "destination": "dag",
            "url_route": "supabase-backups",
        },
    ]

    @property
    def fastapi_apps(self) -> list[dict]:  # type: ignore[override]
        return [{"app": backup_app(), "url_prefix": URL_PREFIX, "name": "Supabase backups"}]
