"""Request and response bodies (they are also the OpenAPI schema the page and the tests read)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from supabase_backup import trigger_form

HistoryStatus = Literal["running", "success", "incomplete", "failed", "skipped"]


class ResponseBody(BaseModel):
    """A reply's body. Every field is sent, defaults included, so the schema says each one is
    required: the page's generated types then need no checks for a field that is always there."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


# The JSON Schema types the trigger form uses, as Python types.
JSON_TYPES: dict[str, type] = {"boolean": bool, "string": str, "integer": int, "number": float}


def form_annotation(field: trigger_form.Field) -> Any:
    """The Python type of one trigger-form field (``list[str] | None`` for a nullable array)."""
    annotation: Any = JSON_TYPES.get(field.type)
    if field.type == "array":
        item_type = JSON_TYPES[field.item_type or "string"]
        # The item type is picked at run time from the form's JSON type; pydantic reads the alias,
        # mypy cannot check a variable as a type argument.
        annotation = list[item_type]  # type: ignore[valid-type]
    return annotation | None if field.nullable else annotation


class TriggerFormChecks(BaseModel):
    """What a trigger request must satisfy beyond its fields' types."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def something_to_back_up(self) -> TriggerFormChecks:
        if not any(getattr(self, part) for part in trigger_form.PART_SWITCHES):
            raise ValueError("nothing to back up: include the database, Auth users or Storage")
        buckets = getattr(self, "buckets", None)
        if buckets is not None and any(not name.strip() for name in buckets):
            raise ValueError("a bucket name is empty")
        return self


# The DAG's trigger form (its Params, built from the same trigger_form.FIELDS); omitted fields
# take the DAG's defaults. mypy checks the unpacked field dict against create_model's own
# keyword options (__config__, __doc__, ...) and finds no overload; the fields are built at run time
# from trigger_form.FIELDS, which mypy cannot follow.
TriggerRequest = create_model(  # type: ignore[call-overload]
    "TriggerRequest",
    __base__=TriggerFormChecks,
    __doc__="The DAG's trigger form (its Params); omitted fields take the DAG's defaults.",
    **{
        field.name: (
            form_annotation(field),
            Field(field.default, title=field.title, description=field.description),
        )
        for field in trigger_form.FIELDS
    },
)


class TriggerResponse(ResponseBody):
    run_id: str


class HistoryRow(ResponseBody):
    """One ``backup_history`` row (all its columns; see include/sql/001_backup_system.sql). Each
    column is declared, so the page's generated types know it; a column added later still passes
    through (extra="allow") until it is declared here."""

    model_config = ConfigDict(extra="allow")

    id: int
    run_id: str
    dag_id: str | None = None
    kind: Literal["backup", "drill"] | None = None
    status: HistoryStatus
    trigger: str
    triggered_by: str | None = None
    run_attempt: int | None = Field(
        default=None, description="Times the DAG run was cleared and re-run."
    )
    started_at: datetime | None = None
    finished_at: datetime | None = None
    s3_bucket: str | None = None
    s3_key: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    database_bytes: int | None = None
    auth_users: int | None = None
    storage_buckets: int | None = None
    storage_objects: int | None = None
    storage_bytes: int | None = None
    objects_created_after_snapshot: int | None = None
    objects_changed_after_snapshot: int | None = None
    objects_deleted_after_snapshot: int | None = None
    objects_unreadable: int | None = Field(
        None, description="Incomplete: objects the Storage API could not serve."
    )
    error: str | None = None
    details: dict | None = None
    progress: dict | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = Field(
        default=None, description="When retention deleted the archive."
    )
    deleted_by: str | None = Field(default=None, description="The retention rules that deleted it.")
    encrypted: bool | None = Field(default=None, description="The archive on S3 is age ciphertext.")
    encryption_recipients: list[str] | None = Field(
        None, description="The age public keys it is encrypted to."
    )
    damaged_at: datetime | None = Field(
        default=None,
        description="When a restore drill found this backup's archive damaged; such a backup "
        "no longer counts as verified (staleness, the next drill, retention's last copies).",
    )
    damaged_by: str | None = Field(
        default=None, description="The run id of the drill that found it."
    )
    damage: str | None = Field(default=None, description="What the drill found.")
    deployment: str | None = Field(
        None, description="The Airflow deployment that owns the row (it alone settles it)."
    )
    settled_by: str | None = Field(
        None, description="Set when a settle, not the run itself, wrote the row's outcome."
    )
    # Not columns: read from Airflow when the page asks, for runs Airflow still has.
    started_by: str = Field(
        "–",
        description='Who started the run as a person names it ("Schedule", "Airflow UI", '
        '"REST API", "CLI", "Backups page"…), from Airflow\'s triggered_by; from the row\'s '
        "trigger column once Airflow no longer has the run.",
    )
    run_started_at: datetime | None = Field(
        None, description="When Airflow started the DAG run (None once Airflow lacks it)."
    )
    run_ended_at: datetime | None = Field(
        None, description="When the DAG run ended in Airflow (None while it runs or once gone)."
    )


class HistoryPage(ResponseBody):
    items: list[HistoryRow]
    total: int
    limit: int
    offset: int


class TaskState(ResponseBody):
    task_id: str
    map_index: int
    label: str | None = Field(
        default=None, description="The bucket of a mapped export_bucket task."
    )
    state: str | None
    try_number: int
    last_try_number: int = Field(1, description="The last try Airflow makes before it fails.")
    next_try_at: str | None = Field(
        default=None, description="For an up_for_retry task: its next try."
    )
    error: str | None = Field(default=None, description="What the task's last failed try met.")
    failed_at: str | None = Field(default=None, description="When that try failed.")


class AirflowRun(ResponseBody):
    run_id: str
    state: str | None
    run_type: str | None
    triggered_by: str | None = Field(
        default=None, description="Airflow's triggered_by (ui, rest_api…)."
    )
    started_by: str | None = Field(default=None, description="The same, as the page names it.")
    triggering_user_name: str | None
    queued_at: str | None
    start_date: str | None
    end_date: str | None
    tasks: list[TaskState]


class Counts(ResponseBody):
    objects_done: int = 0
    objects_known: int = 0
    bytes_done: int = 0
    missing: int = 0
    listing_done: bool = False
    shards: int | None = Field(
        default=None,
        description="For a bucket exported in shards: how many; its "
        "counts are those of all its shards together.",
    )


class Progress(ResponseBody):
    step: str | None = Field(
        default=None, description="The step running now, as the tasks report it."
    )
    updated_at: str | None = None
    buckets: dict[str, Counts] = {}
    total: Counts = Field(
        default_factory=Counts,
        description="All buckets together; listing_done when every bucket's is.",
    )


class RunStatus(ResponseBody):
    run_id: str
    state: str | None = Field(default=None, description="The Airflow DAG run's state.")
    airflow: AirflowRun | None
    history: HistoryRow | None
    progress: Progress


class DownloadUrl(ResponseBody):
    url: str
    expires_in: int
    expires_at: str
    history_id: int
    s3_bucket: str
    s3_key: str
    size_bytes: int | None
    sha256: str | None


class Settings(ResponseBody):
    backup_enabled: bool = Field(
        description="False: scheduled and triggered runs record a "
        "skipped row and stop (unless triggered with force)."
    )


class SettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backup_enabled: bool


class Me(ResponseBody):
    """The caller and what the page may offer them."""

    name: str
    can_read: bool
    can_trigger: bool
    can_edit_settings: bool
