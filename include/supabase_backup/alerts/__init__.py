"""Alerts as plain values: the alert Variables (``settings``), whether a notice is due
(``decisions``) and what it says (``messages``). Sending goes through Airflow's notifiers in
``supabase_backup.airflow.alerting``."""
