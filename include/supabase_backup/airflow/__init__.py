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

Airflow itself is imported inside the functions that use it (the one place in the library where
imports are local, on purpose): these modules are imported by every DAG file parse and by the
plugin while Airflow's plugin manager is still loading, so a module-level import would load the
Task SDK's execution-time modules and the providers (the amazon provider's S3Hook, the SMTP and
Slack notifiers: about a second together) into every parse and every api-server start.
"""
