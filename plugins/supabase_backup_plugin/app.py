"""The FastAPI app Airflow mounts at ``/backup``: the JSON API under ``/api/v1``, the page's built
bundle under ``/ui/static``, and one error shape for everything: ``{"detail": ...}``, never a stack
trace, never a password."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from supabase_backup.errors import BackupError
from supabase_backup_plugin.dependencies import ServiceUnavailable, safe_message
from supabase_backup_plugin.routes import history, page, runs, settings, user

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
BUNDLE_FOLDER = Path(__file__).parent / "ui" / "dist"


def create_app() -> FastAPI:
    app = FastAPI(
        title="Supabase backups",
        description="Trigger and follow backups of the Supabase project, read their history, "
        "get a short-lived download URL for an archive and switch scheduled backups on or off. "
        "Every route needs an Airflow user (a JWT from `POST /auth/token` as a Bearer token, or "
        "the UI's session cookie) with the matching permission on the `supabase_backup` DAG.",
        version="1",
    )
    for module in (runs, history, settings, user):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(page.router)
    # check_dir=False: the app must start (and the API answer) even before `make ui` has built it.
    app.mount("/ui/static", StaticFiles(directory=BUNDLE_FOLDER, check_dir=False), name="ui")

    @app.exception_handler(ServiceUnavailable)
    async def service_unavailable(request: Request, error: ServiceUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503)

    @app.exception_handler(BackupError)
    async def library_error(request: Request, error: BackupError) -> JSONResponse:
        # The library's messages say what to do (a missing migration names the file to apply).
        return JSONResponse({"detail": safe_message(error)}, status_code=503)

    @app.exception_handler(psycopg.Error)
    async def database_error(request: Request, error: psycopg.Error) -> JSONResponse:
        log.warning(
            "%s %s: database error %s", request.method, request.url.path, type(error).__name__
        )
        return JSONResponse(
            {"detail": f"the Supabase database refused the request: {safe_message(error)}"},
            status_code=503,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # The traceback goes to the api-server's log (Airflow's log masking applies there); the
        # caller learns only that it failed and where to look.
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(
            {"detail": f"internal error ({type(error).__name__}); see the Airflow api-server log"},
            status_code=500,
        )

    return app
