"""``/backup/ui``: the Backups page lives inside the Airflow UI (a React plugin app); this address
leads there, for links and bookmarks."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from supabase_backup_plugin.dependencies import CanReadDag

router = APIRouter(tags=["page"])

# The Airflow UI shows a React plugin app whose url_route is "backups" at /plugin/backups. Relative,
# so it also works when Airflow is served under a path prefix.
PAGE_IN_AIRFLOW_UI = "../plugin/backups"


@router.get(
    "/ui",
    dependencies=[CanReadDag],
    response_class=RedirectResponse,
    status_code=307,
    responses={401: {"description": "No Airflow user"}, 403: {"description": "Not permitted"}},
)
def backups_page() -> RedirectResponse:
    return RedirectResponse(PAGE_IN_AIRFLOW_UI, status_code=307)
