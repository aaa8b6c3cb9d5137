"""Request and response bodies (they are also the OpenAPI schema the page and the tests read)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from supabase_backup import trigger_form

HistoryStatus = Literal["running", "success", "incomplete", "failed", "skipped"]


# The JSON Schema types the trigger form uses, as Python types.
JSON_TYPES: dict[str, type] = {"boolean": bool, "string": str, "integer": int, "number": float}


def form_annotation(field: trigger_form.Field) -> Any:
    """The Python type of one trigger-form field (``list[str] | None`` for a nullable array)."""
    annotation: Any = JSON_TYPES.get(field.type)
    if field.type == "array":
        item_type = JSON_TYPES[field.item_type or "string"]
        annotation = list[item_type]
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
# take the DAG's defaults.
TriggerRequest = create_model(
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


class TriggerResponse(BaseModel):
    run_id: str


class HistoryRow(BaseModel):
    """One ``backup_history`` row (all its columns; see include/sql/001_backup_system.sql)."""

    model_config = ConfigDict(extra="allow")

    id: int
    run_id: str
    status: HistoryStatus
    trigger: str
    triggered_by: str | None = None
    started_at: Any = None
    finished_at: Any = None
    s3_bucket: str | None = None
    s3_key: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    error: str | None = None
    progress: dict | None = None


class HistoryPage(BaseModel):
    items: list[HistoryRow]
    total: int
    limit: int
    offset: int


class TaskState(BaseModel):
    task_id: str
    map_index: int
    label: str | None = Field(None, description="The bucket of a mapped export_bucket task.")
    state: str | None
    try_number: int


class AirflowRun(BaseModel):
    run_id: str
    state: str | None
    run_type: str | None
    triggering_user_name: str | None
    queued_at: str | None
    start_date: str | None
    end_date: str | None
    tasks: list[TaskState]


class Counts(BaseModel):
    objects_done: int = 0
    objects_known: int = 0
    bytes_done: int = 0
    missing: int = 0
    listing_done: bool = False
    shards: int | None = Field(
        None,
        description="For a bucket exported in shards: how many; its "
        "counts are those of all its shards together.",
    )


class Progress(BaseModel):
    step: str | None = Field(None, description="The step running now, as the tasks report it.")
    updated_at: str | None = None
    buckets: dict[str, Counts] = {}
    total: Counts = Field(
        default_factory=Counts,
        description="All buckets together; listing_done when every bucket's is.",
    )


class RunStatus(BaseModel):
    run_id: str
    state: str | None = Field(None, description="The Airflow DAG run's state.")
    airflow: AirflowRun | None
    history: HistoryRow | None
    progress: Progress


class DownloadUrl(BaseModel):
    url: str
    expires_in: int
    expires_at: str
    history_id: int
    s3_bucket: str
    s3_key: str
    size_bytes: int | None
    sha256: str | None


class Settings(BaseModel):
    backup_enabled: bool = Field(
        description="False: scheduled and triggered runs record a "
        "skipped row and stop (unless triggered with force)."
    )


class SettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backup_enabled: bool


class Me(BaseModel):
    """The caller and what the page may offer them."""

    name: str
    can_read: bool
    can_trigger: bool
    can_edit_settings: bool
