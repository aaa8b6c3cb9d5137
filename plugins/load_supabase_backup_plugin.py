"""Airflow's entry to the Backups plugin.

Airflow loads each ``.py`` file of the plugins folder as a module named after the file and
registers the ``AirflowPlugin`` classes it finds in it. The plugin itself is the package
``supabase_backup_plugin`` (kept out of that scan by ``.airflowignore``) and is imported here the
ordinary way, since Airflow puts the plugins folder on ``sys.path``. This file must not be named
``supabase_backup_plugin.py``: Airflow would register it under the package's name and hide it.

Where the package is also installed (``pip install "supabase-backup[airflow]"``), Airflow
registers the plugin through the package's ``airflow.plugins`` entry point; this file then offers
nothing, since a second offer of the same name is refused and listed as a plugin import error.
"""

from importlib.metadata import entry_points

PLUGIN_ENTRY_POINT = "supabase_backup_plugin:SupabaseBackupPlugin"

if not any(
    entry_point.value == PLUGIN_ENTRY_POINT for entry_point in entry_points(group="airflow.plugins")
):
    from supabase_backup_plugin import SupabaseBackupPlugin  # noqa: F401 (found by Airflow)
