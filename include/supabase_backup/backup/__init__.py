"""The backup DAG's task bodies (``tasks``) and how a run's outcome is decided and recorded
(``outcome``). Nothing here knows Airflow: ``supabase_backup.airflow.backup_run`` adapts it."""
