"""The one place where Airflow meets the library, split by job.

Only this package (besides ``dags/`` and ``plugins/``) imports ``airflow``; an import-linter
contract in ``pyproject.toml`` keeps it so. It turns Airflow connections, Variables, hooks and a DAG
run's facts into the library's plain values; the task bodies (``supabase_backup.backup``) take what
it builds as arguments and know nothing of Airflow.

- ``connections``: connections and Variables → settings (all the Backups plugin needs)
- ``dag_run``: a DAG run's facts (trigger, user, clear count, ended or not) and failing fast
- ``backup_run``: the backup DAG's adapter (resources, the plan, run_step, the final row)
- ``drill_run``: the restore drill DAG's adapter
- ``alerting``: the failure notifier and sending through Airflow's notifiers
- ``staleness``: the staleness check's task

Everything here runs when a task runs (or a plugin route answers), never while a DAG file is
parsed: parsing must not read a Variable or open a connection.
"""
