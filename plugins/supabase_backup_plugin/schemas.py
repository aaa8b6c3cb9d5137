"""Request and response bodies (they are also the OpenAPI schema the page and the tests read)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

HistoryStatus = Literal["running", "success", "incomplete", "failed", "skipped"]


class TriggerRequest(BaseModel):
    """The DAG's trigger form (its Params); omitted fields take the DAG's defaults."""

    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, description="Back up even when backup_enabled is false.")
    buckets: list[str] | None = Field(
        None, description="Only these buckets (default: the configured list, or all)."
    )
    include_database: bool = Field(True, description="Include the pg_dump of the database.")
    include_auth: bool = Field(True, description="Include auth/users.json.")
    include_storage: bool = Field(True, description="Include the Storage buckets.")

    @model_validator(mode="after")
    def something_to_back_up(self) -> TriggerRequest:
        if not (self.include_database or self.include_auth or self.include_storage):
            raise ValueError("nothing to back up: include the database, Auth users or Storage")
        if self.buckets is not None and any(not name.strip() for name in self.buckets):
            raise ValueError("a bucket name is empty")
        return self


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
    damaged_at: Any = Field(
        None,
        description="When a restore drill found this backup's archive damaged; such a backup "
        "no longer counts as verified (staleness, the next drill, retention's last copies).",
    )
    damaged_by: str | None = Field(None, description="The run id of the drill that found it.")
    damage: str | None = Field(None, description="What the drill found.")


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
