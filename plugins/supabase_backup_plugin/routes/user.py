"""Who is asking and what the page may offer them (it hides what they may not use; the routes
check again regardless)."""

from __future__ import annotations

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from fastapi import APIRouter

from supabase_backup.config import DAG_ID
from supabase_backup_plugin.dependencies import CurrentUser
from supabase_backup_plugin.schemas import Me

router = APIRouter(tags=["user"])


@router.get("/me", response_model=Me, responses={401: {"description": "No Airflow user"}})
def who_am_i(user: CurrentUser) -> Me:
    manager = get_auth_manager()

    def may(method, entity=None) -> bool:
        return manager.is_authorized_dag(
            method=method, access_entity=entity, details=DagDetails(id=DAG_ID), user=user
        )

    return Me(
        name=user.get_name(),
        can_read=may("GET", DagAccessEntity.RUN),
        can_trigger=may("POST", DagAccessEntity.RUN),
        can_edit_settings=may("PUT"),
    )
