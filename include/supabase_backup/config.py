"""The settings of a backup and the run plan: plain values, validated once, handed from task to task.

``BackupSettings`` is what the Airflow Variables say (read by ``supabase_backup.airflow``, the only module that
talks to Airflow); ``RunPlan`` is one run's resolved choice of everything (settings plus the trigger
form's Params), made by the run's first task and passed to every later task as an argument, so a
Variable edited during a run cannot split it between two staging folders or two prefixes. The plan
holds no secret: connections are named by id and resolved where they are used. The only parse-time
knob is the schedule, taken from the environment.

| what                          | where                                         | default                                  |
|-------------------------------|-----------------------------------------------|------------------------------------------|
| Supabase database             | connection ``supabase_db`` (postgres)         | required (unless the next row is set)    |
| Supabase project URL + key    | connection ``supabase_api`` (host, password)  | required (unless the next row is set)    |
| one ``supabase`` connection   | Variable ``supabase_backup_connection_id``    | unset: the two connections above         |
| S3                            | connection ``aws_default``                    | required                                 |
| S3 bucket for archives        | Variable ``supabase_backup_s3_bucket``        | required                                 |
| key prefix in that bucket     | Variable ``supabase_backup_s3_prefix``        | ``supabase-backups/``                    |
| staging root                  | Variable ``supabase_backup_staging_root``     | ``file:///tmp/supabase-backup-staging``  |
| buckets to back up            | Variable ``supabase_backup_buckets``          | all buckets                              |
| download concurrency          | Variable ``supabase_backup_download_concurrency`` | 8                                    |
| objects per export task       | Variable ``supabase_backup_shard_max_objects`` | 250000; bigger buckets are sharded      |
| server-side encryption        | Variable ``supabase_backup_sse``              | ``AES256`` (or ``aws:kms``, ``none``)    |
| KMS key id (with ``aws:kms``) | Variable ``supabase_backup_sse_kms_key_id``   | none                                     |
| pg_dump to use                | Variable ``supabase_backup_pg_dump_path``     | newest pg_dump found on the worker       |
| checksum tables up to (bytes) | Variable ``supabase_backup_exact_figures_max_bytes`` | 1073741824 (1 GiB); larger: count only |
| retention rules (JSON)        | Variable ``supabase_backup_retention``        | none: keep every archive                 |
| age recipients (public keys)  | Variable ``supabase_backup_age_recipients``   | none: no client-side encryption          |
| schedule (parse time)         | environment ``SUPABASE_BACKUP_SCHEDULE``      | ``@daily``                               |
| restore drill's scratch server| connection ``supabase_backup_drill_db``       | required by the drill DAG only           |
| drill schedule (parse time)   | environment ``SUPABASE_BACKUP_DRILL_SCHEDULE``| ``@weekly``                              |
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from urllib.parse import urlsplit

from supabase_backup import trigger_form
from supabase_backup.errors import ConfigurationError
from supabase_backup.retention_rules import RetentionRules

DAG_ID = "supabase_backup"
DRILL_DAG_ID = "supabase_backup_restore_drill"
DRILL_CONN_ID = "supabase_backup_drill_db"
DEFAULT_DRILL_SCHEDULE = "@weekly"
DATABASE_CONN_ID = "supabase_db"
API_CONN_ID = "supabase_api"
AWS_CONN_ID = "aws_default"
# Names one connection of type supabase that replaces supabase_db and supabase_api (both roles).
PROJECT_CONNECTION_VARIABLE = "supabase_backup_connection_id"
DEFAULT_S3_PREFIX = "supabase-backups/"
DEFAULT_STAGING_ROOT = "file:///tmp/supabase-backup-staging"
DEFAULT_SCHEDULE = "@daily"
DEFAULT_DOWNLOAD_CONCURRENCY = 8
DEFAULT_EXACT_FIGURES_MAX_BYTES = 2**30
DEFAULT_SHARD_MAX_OBJECTS = 250_000
SSE_CHOICES = ("AES256", "aws:kms", "none")
# Staging roots Airflow's ObjectStoragePath can reach with the providers this package pins.
STAGING_SCHEMES = ("file", "s3")
TRIGGERS = ("scheduled", "manual", "api", "asset")


def _schedule(value: str) -> str | None:
    value = value.strip()
    return None if value.lower() in ("", "none", "null") else value


def schedule_from_environment() -> str | None:
    """The backup DAG's schedule; ``none`` (any case) turns the schedule off."""
    return _schedule(os.environ.get("SUPABASE_BACKUP_SCHEDULE", DEFAULT_SCHEDULE))


def drill_schedule_from_environment() -> str | None:
    """The restore drill's schedule (default weekly); ``none`` turns it off."""
    return _schedule(os.environ.get("SUPABASE_BACKUP_DRILL_SCHEDULE", DEFAULT_DRILL_SCHEDULE))


@dataclass(frozen=True)
class BackupSettings:
    """What the Variables say; every field is checked when it is built."""

    s3_bucket: str
    s3_prefix: str = DEFAULT_S3_PREFIX
    staging_root: str = DEFAULT_STAGING_ROOT
    buckets: tuple[str, ...] | None = None
    download_concurrency: int = DEFAULT_DOWNLOAD_CONCURRENCY
    server_side_encryption: str = "AES256"
    sse_kms_key_id: str | None = None
    pg_dump_path: str | None = None
    exact_figures_max_bytes: int = DEFAULT_EXACT_FIGURES_MAX_BYTES
    shard_max_objects: int = DEFAULT_SHARD_MAX_OBJECTS
    database_conn_id: str = DATABASE_CONN_ID
    api_conn_id: str = API_CONN_ID
    aws_conn_id: str = AWS_CONN_ID
    retention: dict | None = None  # the rules as JSON (retention.RetentionRules), None: keep all
    age_recipients: tuple[str, ...] | None = None  # public keys; None: no client-side encryption

    @classmethod
    def from_variables(cls, get_variable) -> BackupSettings:
        """Build from a ``get_variable(name, default)`` callable (Airflow's ``Variable.get``)."""
        bucket = (get_variable("supabase_backup_s3_bucket", None) or "").strip()
        if not bucket:
            raise ConfigurationError(
                "the Airflow Variable supabase_backup_s3_bucket is not set: set it to the S3 bucket "
                "that receives the archives (e.g. AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET=my-backups)"
            )
        concurrency_text = get_variable(
            "supabase_backup_download_concurrency", str(DEFAULT_DOWNLOAD_CONCURRENCY)
        )
        try:
            concurrency = int(concurrency_text)
        except ValueError:
            concurrency = 0
        if not 1 <= concurrency <= 64:
            raise ConfigurationError(
                f"supabase_backup_download_concurrency must be a whole number from 1 to 64, "
                f"not {concurrency_text!r}"
            )
        sse = get_variable("supabase_backup_sse", "AES256") or "AES256"
        if sse not in SSE_CHOICES:
            raise ConfigurationError(
                f"supabase_backup_sse must be one of {', '.join(SSE_CHOICES)}, not {sse!r}"
            )
        max_bytes_text = get_variable(
            "supabase_backup_exact_figures_max_bytes", str(DEFAULT_EXACT_FIGURES_MAX_BYTES)
        )
        try:
            max_bytes = int(str(max_bytes_text).strip())
        except ValueError:
            max_bytes = -1
        if max_bytes < 0:
            raise ConfigurationError(
                f"supabase_backup_exact_figures_max_bytes must be a whole number of bytes (0 or "
                f"more; tables larger get a row count without a checksum), not {max_bytes_text!r}"
            )
        shard_text = get_variable(
            "supabase_backup_shard_max_objects", str(DEFAULT_SHARD_MAX_OBJECTS)
        )
        try:
            shard_max_objects = int(str(shard_text).strip())
        except ValueError:
            shard_max_objects = 0
        if shard_max_objects < 1:
            raise ConfigurationError(
                f"supabase_backup_shard_max_objects must be a whole number of objects (1 or more; "
                f"a bucket with more is exported by several tasks), not {shard_text!r}"
            )
        # One supabase connection serves as both; unset, the two connections of old.
        project_conn_id = (get_variable(PROJECT_CONNECTION_VARIABLE, None) or "").strip()
        return cls(
            database_conn_id=project_conn_id or DATABASE_CONN_ID,
            api_conn_id=project_conn_id or API_CONN_ID,
            s3_bucket=bucket,
            s3_prefix=checked_prefix(get_variable("supabase_backup_s3_prefix", DEFAULT_S3_PREFIX)),
            staging_root=checked_staging_root(
                get_variable("supabase_backup_staging_root", DEFAULT_STAGING_ROOT)
            ),
            buckets=parse_bucket_list(get_variable("supabase_backup_buckets", None)),
            download_concurrency=concurrency,
            server_side_encryption=sse,
            sse_kms_key_id=get_variable("supabase_backup_sse_kms_key_id", None) or None,
            pg_dump_path=get_variable("supabase_backup_pg_dump_path", None) or None,
            exact_figures_max_bytes=max_bytes,
            shard_max_objects=shard_max_objects,
            retention=_retention_rules(get_variable("supabase_backup_retention", None)),
            age_recipients=_age_recipients(get_variable("supabase_backup_age_recipients", None)),
        )


def _retention_rules(value) -> dict | None:
    rules = RetentionRules.parse(value)
    return asdict(rules) if rules else None


def _age_recipients(value) -> tuple[str, ...] | None:
    if value is None or not str(value).strip():
        return None  # checked only when set: pyrage is needed only to encrypt
    return parse_recipients(value)


def checked_prefix(value: str | None) -> str:
    """The archive key prefix, ending in ``/`` (or empty); no ``..`` segment and no leading ``/``,
    which S3 would take literally and a person would not find where they look."""
    prefix = (value or "").strip()
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if prefix.startswith("/") or ".." in prefix.split("/"):
        raise ConfigurationError(
            f"the Airflow Variable supabase_backup_s3_prefix is {value!r}: it must not start with "
            "'/' or contain a '..' segment (e.g. supabase-backups/)"
        )
    return prefix


def checked_staging_root(value: str | None) -> str:
    """An absolute ``file:///`` folder or an object-store URL whose scheme we know.

    ``file://relative/x`` is refused: its ``relative`` is a host to a URL parser but a folder to
    the object store, which would stage under the worker's working directory. ``s3://bucket/x``
    reaches S3 through the plan's AWS connection (``airflow.connections.staging_area``);
    ``s3://conn_id@bucket/x`` names another connection."""
    root = (value or "").strip() or DEFAULT_STAGING_ROOT
    if root.startswith("/"):
        root = f"file://{root}"
    parts = urlsplit(root)
    if (
        parts.scheme not in STAGING_SCHEMES
        or (parts.scheme == "file" and (parts.netloc or not parts.path.startswith("/")))
        or (parts.scheme != "file" and not parts.netloc.rpartition("@")[2])
    ):
        raise ConfigurationError(
            f"the Airflow Variable supabase_backup_staging_root is {value!r}: use an absolute "
            f"folder (/var/staging or file:///var/staging, three slashes) or an object-store URL "
            f"such as s3://bucket/staging (schemes: {', '.join(STAGING_SCHEMES)})"
        )
    return root


def parse_bucket_list(value) -> tuple[str, ...] | None:
    """Accept a JSON list, a comma-separated string, a list, or nothing (= every bucket)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        names = [str(item).strip() for item in value]
    else:
        text = str(value).strip()
        if not text:
            return None
        if text.startswith("["):
            try:
                names = [str(item).strip() for item in json.loads(text)]
            except json.JSONDecodeError as error:
                raise ConfigurationError(
                    f"bucket list {text!r} is not valid JSON: {error}"
                ) from None
        else:
            names = [part.strip() for part in text.split(",")]
    names = [name for name in names if name]
    return tuple(dict.fromkeys(names)) or None


@dataclass(frozen=True)
class RunPlan:
    """One run's settings and choices, resolved once by its first task. Small and JSON-friendly
    (it travels as an XCom), recorded in the manifest, and free of secrets.

    ``settings`` are the Variables as this run uses them: when the trigger form names buckets,
    they replace ``supabase_backup_buckets`` (``buckets``), so every later task reads one bucket
    selection. The rest are the run's own facts and the trigger form's other choices."""

    settings: BackupSettings
    run_id: str
    trigger: str
    started_at: str  # ISO 8601, UTC: names the archive
    triggered_by: str | None = None
    logical_date: str | None = None
    attempt: int = 0  # the DAG run's clear count when planned (0: its first attempt)
    forced: bool = False
    include_database: bool = True
    include_auth: bool = True
    include_storage: bool = True
    # True: upload_archive writes the zip straight into a multipart upload (no local archive);
    # False: build_archive writes it to staging and upload_archive uploads the file.
    stream_archive: bool = True

    @property
    def buckets(self) -> tuple[str, ...] | None:
        """The buckets this run backs up: the form's list, else the Variable's; None: every
        bucket the project has."""
        return self.settings.buckets

    @classmethod
    def create(
        cls,
        settings: BackupSettings,
        *,
        run_id: str,
        trigger: str,
        started_at: str,
        params: dict,
        triggered_by: str | None = None,
        logical_date: str | None = None,
        attempt: int = 0,
    ) -> RunPlan:
        """Combine the Variables with the trigger form's Params (a Param left out takes the form's
        default); refuse a run that would back up nothing."""
        choices = {**trigger_form.defaults(), **params}
        include = {part: bool(choices[part]) for part in trigger_form.PART_SWITCHES}
        if not any(include.values()):
            raise ConfigurationError(
                "include_database, include_auth and include_storage are all false: the run would "
                "back up nothing; trigger it with at least one of them true"
            )
        if trigger not in TRIGGERS:
            raise ConfigurationError(f"unknown trigger {trigger!r} (expected one of {TRIGGERS})")
        requested = parse_bucket_list(choices["buckets"])
        return cls(
            settings=replace(settings, buckets=requested or settings.buckets),
            run_id=run_id,
            trigger=trigger,
            triggered_by=triggered_by,
            started_at=started_at,
            logical_date=logical_date,
            attempt=attempt,
            forced=bool(choices["force"]),
            **include,
        )

    def to_dict(self) -> dict:
        """The run's facts and choices with the settings beside them in one flat dict: the shape
        the manifest's ``run`` and ``plan`` sections are cut from (FORMAT.md)."""
        plan = {item.name: getattr(self, item.name) for item in fields(self)}
        settings = asdict(plan.pop("settings"))
        settings["buckets"] = list(self.buckets) if self.buckets is not None else None
        settings["age_recipients"] = (
            list(self.settings.age_recipients) if self.settings.age_recipients else None
        )
        return {**plan, **settings}

    @classmethod
    def from_dict(cls, value: dict | RunPlan) -> RunPlan:
        if isinstance(value, RunPlan):
            return value
        own = {item.name for item in fields(cls)} - {"settings"}
        settings = {item.name for item in fields(BackupSettings)}
        plan = {name: item for name, item in value.items() if name in own}
        chosen = {name: item for name, item in value.items() if name in settings}
        if chosen.get("buckets") is not None:
            chosen["buckets"] = tuple(chosen["buckets"])
        if chosen.get("age_recipients"):
            chosen["age_recipients"] = tuple(chosen["age_recipients"])
        return cls(settings=BackupSettings(**chosen), **plan)


def age_recipient(text: str):
    """The pyrage recipient of one public key. pyrage is imported here, not at the top: a
    deployment without encryption never loads it (its wheel is optional in a minimal install)."""
    import pyrage

    if text.startswith("age1"):
        return pyrage.x25519.Recipient.from_str(text)
    if text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
        return pyrage.ssh.Recipient.from_str(text)
    raise ValueError("not an age1… or ssh public key")


def parse_recipients(value) -> tuple[str, ...] | None:
    """The recipients as given (comma-separated text or a list), each checked; None when unset.
    A secret key pasted by mistake is refused without echoing it."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    recipients = tuple(dict.fromkeys(item.strip() for item in items if item and item.strip()))
    for index, recipient in enumerate(recipients, 1):
        if recipient.upper().startswith("AGE-SECRET-KEY-"):
            raise ConfigurationError(
                f"supabase_backup_age_recipients item {index} is an age SECRET key: put only "
                "public keys (age1…) there, remove the secret from the Variable and rotate it"
            )
        try:
            age_recipient(recipient)
        except Exception:  # noqa: BLE001 - pyrage raises its own types
            raise ConfigurationError(
                f"supabase_backup_age_recipients item {index} ({recipient[:12]}…) is not an age "
                "public key: use age1… keys (age-keygen -y key.txt) separated by commas"
            ) from None
    return recipients or None
