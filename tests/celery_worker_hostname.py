"""The hostname a test Celery worker reports for the task instances it runs.

`AIRFLOW__CORE__HOSTNAME_CALLABLE=tests.celery_worker_hostname.worker_hostname` in the workers of
tests/celery_services.py: both workers share this machine, so each is told its own name through
`SUPABASE_BACKUP_TEST_WORKER_NAME`, and the task instance's `hostname` (REST API) says which worker
ran it. Kept apart from celery_services.py because the task process imports it: importing the
test helpers there would run tests/conftest.py and move AIRFLOW_HOME.
"""

import os
import socket


def worker_hostname() -> str:
    return os.environ.get("SUPABASE_BACKUP_TEST_WORKER_NAME") or socket.getfqdn()
