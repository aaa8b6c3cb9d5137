"""The Backups plugin: a FastAPI app under ``/backup`` (trigger, progress, history, download URLs,
the enabled switch) and the Backups page in the Airflow UI.

Airflow mounts the app without authenticating it: every route checks the caller's Airflow
permissions on the ``supabase_backup`` DAG itself (``dependencies.py``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from supabase_backup_plugin.app import URL_PREFIX, create_app

# The page is a React component the Airflow UI loads from this URL (built by `make ui`).
BUNDLE_URL = f"{URL_PREFIX}/ui/static/backups.js"


class SupabaseBackupPlugin(AirflowPlugin):
    name = "supabase_backup"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Supabase backups"}]
    react_apps = [
        {"name": "Backups", "bundle_url": BUNDLE_URL, "destination": "nav",
         "url_route": "backups", "category": "browse"},
        {"name": "Backups", "bundle_url": BUNDLE_URL, "destination": "dag",
         "url_route": "supabase-backups"},
    ]
