"""The enabled switch (``system_settings_kv.backup_enabled``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from supabase_backup.records import enabled as settings
from supabase_backup_plugin.dependencies import (
    CanEditDag,
    CanReadDag,
    CurrentUser,
    Database,
    ReadOnlyDatabase,
)
from supabase_backup_plugin.schemas import Settings, SettingsUpdate

router = APIRouter(tags=["settings"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No Airflow user"},
    403: {"description": "Not permitted"},
}


@router.get("/settings", response_model=Settings, dependencies=[CanReadDag], responses=ERRORS)
def get_settings(connection: ReadOnlyDatabase) -> Settings:
    return Settings(backup_enabled=settings.read_backup_enabled(connection))


@router.put("/settings", response_model=Settings, dependencies=[CanEditDag], responses=ERRORS)
def put_settings(update: SettingsUpdate, user: CurrentUser, connection: Database) -> Settings:
    """Switch backups on or off; the row records who did it."""
    settings.write_backup_enabled(connection, update.backup_enabled, updated_by=user.get_name())
    return Settings(backup_enabled=settings.read_backup_enabled(connection))
