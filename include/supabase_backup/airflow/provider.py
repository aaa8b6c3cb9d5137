"""What the package registers with Airflow: the ``apache_airflow_provider`` entry point's answer.

Airflow calls ``get_provider_info()`` in every process that discovers providers and validates the
dict against ``airflow/provider_info.schema.json``; an exception here, or a ``package-name`` that is
not the distribution's name, stops that Airflow process. So this module imports nothing but the
package's version and builds plain data: class paths are strings, imported by Airflow when needed.

The connection form is declared here (``conn-fields``, ``ui-field-behaviour``), the way Airflow
3.2+ reads it from a provider without importing the hook; the hooks' ``get_connection_form_widgets``
and ``get_ui_field_behaviour`` are deprecated since 3.2.0 and Airflow skips them when this is set.
"""

from __future__ import annotations

from supabase_backup import __version__

PACKAGE_NAME = "supabase-backup"
HOOK_CLASS_NAME = "supabase_backup.airflow.supabase_hook.SupabaseHook"
NOTIFIER_CLASS_NAME = "supabase_backup.airflow.alerting.BackupAlertNotifier"

# Extra fields of the form, stored in the connection's extra under these names.
CONNECTION_FIELDS = {
    "database_url": {
        "label": "Database URL (session pooler)",
        "schema": {"type": ["string", "null"], "format": "password"},
        "description": (
            "The session pooler URI from the dashboard's Connect dialog, with the database "
            "password: postgresql://postgres.<project-ref>:<password>@"
            "aws-0-<region>.pooler.supabase.com:5432/postgres (port 5432; the transaction pooler "
            "on 6543 cannot run pg_dump)."
        ),
    },
    "management_token": {
        "label": "Management API token",
        "schema": {"type": ["string", "null"], "format": "password"},
        "description": (
            "Optional. A personal access token (sbp_…) for the Management API, to read the "
            "project's configuration. Leave empty to back up database, Auth and Storage only."
        ),
    },
}

FIELD_BEHAVIOUR = {
    # Extra stays visible: it takes the optional overrides (project_ref, management_api_url).
    "hidden-fields": ["schema", "login", "port"],
    "relabeling": {"host": "Project URL", "password": "Service key"},
    "placeholders": {
        "host": "https://<project-ref>.supabase.co",
        "password": "sb_secret_… or the service_role JWT",
        "database_url": "postgresql://postgres.<project-ref>:<password>@aws-0-<region>.pooler.supabase.com:5432/postgres",
        "management_token": "sbp_…",
    },
}


def get_provider_info() -> dict:
    return {
        "package-name": PACKAGE_NAME,
        "name": "Supabase Backup",
        "description": (
            "Complete, verifiable backups of Supabase projects: the `supabase` connection type, "
            "the backup alert notifier and the Backups page."
        ),
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "supabase",
                "hook-class-name": HOOK_CLASS_NAME,
                "hook-name": "Supabase",
                "conn-fields": CONNECTION_FIELDS,
                "ui-field-behaviour": FIELD_BEHAVIOUR,
            }
        ],
        "notifications": [NOTIFIER_CLASS_NAME],
        # No "plugins" here: Airflow 3.3.2 loads a provider's plugins only with [core]
        # lazy_discover_providers = False, and then on top of the package's airflow.plugins entry
        # point (pyproject.toml), which every configuration loads; the second offer of the same
        # name would be refused and listed as a plugin import error.
    }
