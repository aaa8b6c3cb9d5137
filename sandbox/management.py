"""The Supabase Management API stand-in: /v1/projects/{ref}/... on the sandbox's API port.

Built from the official OpenAPI description (sandbox/spec/management_api_v1.json, trimmed to the
operations served here; its info.x-trimmed-from says where it comes from): every answer has the
shape of the spec's response schema, and tests/sandbox/test_management_api_conformance.py validates
each one against it, so the stand-in cannot drift from the real API.

What the real API does and this copies (README "Management API"):
- Bearer personal access token (``sbp_...``); a missing or wrong one is HTTP 401
  ``{"message": "Unauthorized"}``; a project ref the token does not reach is HTTP 403.
- 120 requests a minute per token, per project, per endpoint (supabase/supabase
  ``apps/docs/content/_partials/api_rate_limits.mdx``): every answer carries ``X-RateLimit-Limit``,
  ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds until the window resets); past the
  limit, HTTP 429 ``{"message": "Too Many Requests"}``. The fault keys ``management_rate_limit`` and
  ``management_rate_window_seconds`` lower the limit for tests.
- Secrets are listed with a SHA-256 digest in ``value``, never the value; API keys of type
  ``secret`` are masked unless ``?reveal=true``; the legacy ``service_role`` key and PostgREST's
  ``jwt_secret`` are returned, as the real API returns them (the product must drop them).
- Function bodies: the spec types ``GET .../functions/{slug}/body`` as an opaque StreamableFile. The
  real API answers an eszip (or, with ``Accept: multipart/form-data``, the source files); an eszip
  needs Deno tooling to build, so the stand-in serves a zip of the function's source files
  (``application/octet-stream``), and ``POST .../functions/deploy`` (multipart: ``metadata`` JSON and
  ``file`` parts, as the spec's FunctionDeployBody) stores a new zip, so a later GET returns it.

State lives in STATE/management/state.json (configuration, functions' metadata, secrets) and
STATE/management/functions/<slug>.zip; it is seeded once per state dir, and changes (PATCH, PUT,
POST) are kept there so a later GET reflects them. Shares no code with include/supabase_backup.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import math
import os
import re
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

SPEC_PATH = Path(__file__).parent / "spec" / "management_api_v1.json"
PREFIX = "/v1/projects/{ref}"
DEFAULT_RATE_LIMIT = 120
DEFAULT_RATE_WINDOW_SECONDS = 60
SLUG_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
SEED_TIME = "2025-06-01T12:00:00Z"
SEED_EPOCH_MS = 1748779200000


def load_spec() -> dict:
    with open(SPEC_PATH) as fh:
        return json.load(fh)


# ------------------------------------------------------------------------------------------------
# seed
# ------------------------------------------------------------------------------------------------
def _schema_defaults(schema: dict) -> dict:
    """A value for every property of an object schema: the first enum value (the validator holds a
    nullable enum to its values, and the real API fills these), else null where nullable, else
    false, the minimum (or 0), or an empty string."""
    out: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if "enum" in prop:
            out[name] = prop["enum"][0]
        elif prop.get("nullable"):
            out[name] = None
        elif prop.get("type") == "boolean":
            out[name] = False
        elif prop.get("type") in ("integer", "number"):
            out[name] = prop.get("minimum", 0)
        elif prop.get("type") == "array":
            out[name] = []
        else:
            out[name] = ""
    return out


def _function_zip(files: dict[str, bytes]) -> bytes:
    """A deterministic zip (fixed timestamps, sorted names) of a function's source files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(2025, 6, 1, 12, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()


SEED_FUNCTIONS: dict[str, dict[str, Any]] = {
    "hello-world": {
        "name": "hello-world",
        "verify_jwt": True,
        "files": {
            "index.ts": (
                b'import "jsr:@supabase/functions-js/edge-runtime.d.ts";\n\n'
                b"Deno.serve(async (req) => {\n"
                b"  const { name } = await req.json();\n"
                b"  return new Response(JSON.stringify({ message: `Hello ${name}!` }), {\n"
                b'    headers: { "Content-Type": "application/json" },\n'
                b"  });\n"
                b"});\n"
            ),
            "deno.json": b'{\n  "imports": {}\n}\n',
        },
    },
    "stripe-webhook": {
        "name": "stripe-webhook",
        "verify_jwt": False,
        "files": {
            "index.ts": (
                b'import Stripe from "npm:stripe@17";\n\n'
                b'const stripe = new Stripe(Deno.env.get("STRIPE_SECRET_KEY")!);\n\n'
                b"Deno.serve(async (req) => {\n"
                b'  const signature = req.headers.get("stripe-signature")!;\n'
                b"  const event = await stripe.webhooks.constructEventAsync(\n"
                b'    await req.text(), signature, Deno.env.get("STRIPE_WEBHOOK_SECRET")!);\n'
                b"  return new Response(JSON.stringify({ received: event.type }));\n"
                b"});\n"
            ),
            "deno.json": b'{\n  "imports": { "stripe": "npm:stripe@17" }\n}\n',
        },
    },
}


def seed_state(settings: dict, spec: dict) -> tuple[dict, dict[str, bytes]]:
    """The seeded project: a realistic configuration, two Edge Functions, three secrets.

    Values that are secret on a real project (the Google client secret, the SMTP password, the
    secrets' values) start with the settings' ``management_canary``, so a test can look for it
    in anything the product writes."""
    schemas = spec["components"]["schemas"]
    canary = settings["management_canary"]
    auth = _schema_defaults(schemas["AuthConfigResponse"])
    auth_values = {
        "site_url": "http://localhost:3000",
        "uri_allow_list": "http://localhost:3000/**,https://app.example.com/auth/callback",
        "disable_signup": False,
        "jwt_exp": 3600,
        "mailer_otp_exp": 3600,
        "mailer_autoconfirm": False,
        "mailer_secure_email_change_enabled": True,
        "mailer_subjects_confirmation": "Confirm your signup",
        "mailer_templates_confirmation_content": (
            '<h2>Confirm your signup</h2>\n<p><a href="{{ .ConfirmationURL }}">Confirm</a></p>'
        ),
        "external_email_enabled": True,
        "external_phone_enabled": False,
        "external_anonymous_users_enabled": True,
        "external_google_enabled": True,
        "external_google_client_id": "1234567890-sandbox.apps.googleusercontent.com",
        "external_google_secret": f"{canary}-google-oauth-secret",
        "external_github_enabled": False,
        "smtp_host": "smtp.example.com",
        "smtp_port": "587",
        "smtp_user": "postmaster@example.com",
        "smtp_pass": f"{canary}-smtp-password",
        "smtp_admin_email": "noreply@example.com",
        "smtp_sender_name": "Sandbox App",
        "smtp_max_frequency": 60,
        "rate_limit_email_sent": 30,
        "rate_limit_token_refresh": 150,
        "refresh_token_rotation_enabled": True,
        "security_refresh_token_reuse_interval": 10,
        "password_min_length": 8,
        "mfa_max_enrolled_factors": 10,
        "sms_provider": "twilio",
        "security_captcha_provider": "hcaptcha",
        "db_max_pool_size": 10,
        "db_max_pool_size_unit": "connections",
    }
    unknown = set(auth_values) - set(auth)
    assert not unknown, f"seed uses auth fields the spec lacks: {sorted(unknown)}"
    auth.update(auth_values)

    pooler_url = (f"postgresql://postgres.{settings['project_ref']}:[YOUR-PASSWORD]@"
                  f"{settings['pg_host']}:{settings['pg_port']}/postgres")
    config = {
        "auth": auth,
        "postgrest": {"db_schema": "public,graphql_public", "max_rows": 1000,
                      "db_extra_search_path": "public,extensions", "db_pool": None,
                      "jwt_secret": settings["jwt_secret"]},
        "storage": {
            "fileSizeLimit": 52428800,
            "features": {
                "imageTransformation": {"enabled": True},
                "s3Protocol": {"enabled": True},
                "icebergCatalog": {"enabled": False, "maxNamespaces": 0, "maxTables": 0,
                                   "maxCatalogs": 0},
                "vectorBuckets": {"enabled": False, "maxBuckets": 0, "maxIndexes": 0},
            },
            "capabilities": {"list_v2": True, "iceberg_catalog": False},
            "external": {"upstreamTarget": "main"},
            "migrationVersion": "fix-optimized-search-function",
            "databasePoolMode": "recycled",
        },
        "postgres": {"statement_timeout": "8s", "max_connections": 60, "work_mem": "4MB",
                     "session_replication_role": "origin", "track_commit_timestamp": False},
        "pooler": [{
            "identifier": settings["project_ref"], "database_type": "PRIMARY",
            "is_using_scram_auth": True, "db_user": f"postgres.{settings['project_ref']}",
            "db_host": settings["pg_host"], "db_port": int(settings["pg_port"]),
            "db_name": "postgres", "connection_string": pooler_url, "connectionString": pooler_url,
            "default_pool_size": 15, "max_client_conn": 200, "pool_mode": "transaction",
        }],
        "network_restrictions": {
            "entitlement": "allowed",
            "config": {"dbAllowedCidrs": ["203.0.113.0/24", "198.51.100.7/32"],
                       "dbAllowedCidrsV6": ["2001:db8::/32"]},
            "status": "applied", "updated_at": SEED_TIME, "applied_at": SEED_TIME,
        },
        "ssl_enforcement": {"currentConfig": {"database": True}, "appliedSuccessfully": True},
        "sso_providers": {"items": [{
            "id": "8d6c6e6a-3b4f-4c61-9a7e-2f1f0c1d5e01",
            "saml": {"id": "5f0e1c2d-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
                     "entity_id": "https://idp.example.com/saml/metadata",
                     "metadata_url": "https://idp.example.com/saml/metadata",
                     "attribute_mapping": {"keys": {"email": {"name": "mail"}}},
                     "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"},
            "domains": [{"id": "0b6b9f5e-2a71-4f0e-b7c3-9d8e7f6a5b4c", "domain": "example.com",
                         "created_at": SEED_TIME, "updated_at": SEED_TIME}],
            "created_at": SEED_TIME, "updated_at": SEED_TIME,
        }]},
        "custom_hostname": {
            "status": "5_services_reconfigured",
            "custom_hostname": "api.example.com",
            "data": {"success": True, "errors": [], "messages": [], "result": {
                "id": "c0ffee00-0000-4000-8000-000000000001", "hostname": "api.example.com",
                "ssl": {"status": "active", "validation_records": []},
                "ownership_verification": {"type": "txt",
                                           "name": "_cf-custom-hostname.api.example.com",
                                           "value": "5cc2e2b4-0ea5-4e4b-8c6d-000000000001"},
                "custom_origin_server": f"{settings['project_ref']}.supabase.co",
                "status": "active",
            }},
        },
        "api_keys": [
            {"name": "anon", "api_key": settings["anon_jwt"], "id": "anon", "type": "legacy",
             "hash": _key_hash(settings["anon_jwt"]), "prefix": settings["anon_jwt"][:5],
             "description": "Legacy anon API key"},
            {"name": "service_role", "api_key": settings["service_role_jwt"],
             "id": "service_role", "type": "legacy",
             "hash": _key_hash(settings["service_role_jwt"]),
             "prefix": settings["service_role_jwt"][:5],
             "description": "Legacy service_role API key"},
            {"id": "6a3e2f1d-0c9b-4a8e-9f7d-6c5b4a392817", "name": "default", "type": "publishable",
             "api_key": settings["anon_key"], "description": None, "secret_jwt_template": None,
             "hash": _key_hash(settings["anon_key"]), "prefix": settings["anon_key"][:20],
             "inserted_at": SEED_TIME, "updated_at": SEED_TIME},
            {"id": "9e8d7c6b-5a49-4382-b716-05f4e3d2c1b0", "name": "default", "type": "secret",
             "api_key": settings["service_key"], "description": None,
             "secret_jwt_template": {"role": "service_role"},
             "hash": _key_hash(settings["service_key"]), "prefix": settings["service_key"][:14],
             "inserted_at": SEED_TIME, "updated_at": SEED_TIME},
        ],
    }
    functions: dict[str, dict] = {}
    bodies: dict[str, bytes] = {}
    for number, (slug, seed) in enumerate(SEED_FUNCTIONS.items()):
        body = _function_zip(seed["files"])
        bodies[slug] = body
        functions[slug] = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-function/{slug}")),
            "slug": slug, "name": seed["name"], "status": "ACTIVE", "version": 1 + number,
            "created_at": SEED_EPOCH_MS, "updated_at": SEED_EPOCH_MS + number * 1000,
            "verify_jwt": seed["verify_jwt"], "import_map": True,
            "entrypoint_path": f"file:///src/functions/{slug}/index.ts",
            "import_map_path": f"file:///src/functions/{slug}/deno.json",
            "ezbr_sha256": hashlib.sha256(body).hexdigest(),
        }
    secrets = {
        name: {"value": f"{canary}-{name.lower()}", "updated_at": SEED_TIME}
        for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "OPENAI_API_KEY")
    }
    return {"config": config, "functions": functions, "secrets": secrets}, bodies


def _key_hash(key: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()).decode().rstrip("=")


# ------------------------------------------------------------------------------------------------
# state and rate limit
# ------------------------------------------------------------------------------------------------
class ManagementState:
    """The project's management-side state, kept in STATE/management (seeded on first use)."""

    def __init__(self, settings: dict, spec: dict):
        self.folder = Path(settings["state_dir"]) / "management"
        self.bodies = self.folder / "functions"
        self.path = self.folder / "state.json"
        self.lock = threading.Lock()
        self.bodies.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.data = json.loads(self.path.read_text())
        else:
            self.data, bodies = seed_state(settings, spec)
            for slug, body in bodies.items():
                (self.bodies / f"{slug}.zip").write_bytes(body)
            self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)

    def body_path(self, slug: str) -> Path:
        return self.bodies / f"{slug}.zip"


class RateLimiter:
    """Fixed one-window counters per (token, project, method, endpoint)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.windows: dict[tuple, tuple[float, int]] = {}

    def take(self, key: tuple, limit: int, window: int) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        with self.lock:
            started, used = self.windows.get(key, (now, 0))
            if now - started >= window:
                started, used = now, 0
            allowed = used < limit
            if allowed:
                used += 1
            self.windows[key] = (started, used)
        reset = max(1, math.ceil(started + window - now))
        headers = {"X-RateLimit-Limit": str(limit),
                   "X-RateLimit-Remaining": str(max(0, limit - used)),
                   "X-RateLimit-Reset": str(reset)}
        return allowed, headers


# ------------------------------------------------------------------------------------------------
# routes
# ------------------------------------------------------------------------------------------------
class ManagementApi:
    def __init__(self, settings: dict, faults):
        self.settings = settings
        self.faults = faults
        self.spec = load_spec()
        self.state = ManagementState(settings, self.spec)
        self.limiter = RateLimiter()
        self.token = settings["management_token"]
        self.project_ref = settings["project_ref"]
        update_schemas = self.spec["components"]["schemas"]
        self.updatable = {
            "auth": set(update_schemas["UpdateAuthConfigBody"]["properties"]),
            "postgrest": set(update_schemas["V1UpdatePostgrestConfigBody"]["properties"]),
            "storage": set(update_schemas["UpdateStorageConfigBody"]["properties"]),
            "postgres": set(update_schemas["UpdatePostgresConfigBody"]["properties"]),
            "pooler": set(update_schemas["UpdateSupavisorConfigBody"]["properties"]),
        }

    # -- the gate every request passes -----------------------------------------------------------
    def endpoint(self, handler, template: str):
        async def guarded(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            token = header[7:].strip() if header[:7].lower() == "bearer " else ""
            if token != self.token:
                return JSONResponse({"message": "Unauthorized"}, status_code=401)
            ref = request.path_params["ref"]
            if ref != self.project_ref:
                return JSONResponse(
                    {"message": "Your account does not have the necessary privileges to access "
                                "this endpoint. For more details, refer to our documentation "
                                "https://supabase.com/docs/guides/platform/access-control"},
                    status_code=403)
            limit = self.faults.get("management_rate_limit")
            window = self.faults.get("management_rate_window_seconds")
            allowed, headers = self.limiter.take((token, ref, request.method, template), limit,
                                                 window)
            if not allowed:
                self.faults.count("management_rate_limited")
                return JSONResponse({"message": "Too Many Requests"}, status_code=429,
                                    headers=headers)
            self.faults.count("management_requests")
            response = await handler(request)
            response.headers.update(headers)
            return response

        return guarded

    def routes(self) -> list[Route]:
        config_paths = {
            "auth": "/config/auth", "postgrest": "/postgrest", "storage": "/config/storage",
            "postgres": "/config/database/postgres", "pooler": "/config/database/pooler",
            "network_restrictions": "/network-restrictions", "ssl_enforcement": "/ssl-enforcement",
            "sso_providers": "/config/auth/sso/providers", "custom_hostname": "/custom-hostname",
        }
        update_methods = {"auth": "PATCH", "postgrest": "PATCH", "storage": "PATCH",
                          "postgres": "PUT", "pooler": "PATCH", "ssl_enforcement": "PUT"}
        routes = []
        for part, suffix in config_paths.items():
            template = PREFIX + suffix
            methods = ["GET"] + ([update_methods[part]] if part in update_methods else [])
            routes.append(Route(template, self.endpoint(self._config_handler(part), template),
                                methods=methods))
        table = [
            ("/network-restrictions/apply", self.apply_network_restrictions, ["POST"]),
            ("/api-keys", self.api_keys, ["GET"]),
            ("/functions", self.list_functions, ["GET"]),
            ("/functions/deploy", self.deploy_function, ["POST"]),
            ("/functions/{slug}", self.get_function, ["GET"]),
            ("/functions/{slug}/body", self.function_body, ["GET"]),
            ("/secrets", self.secrets, ["GET", "POST"]),
        ]
        for suffix, handler, methods in table:
            template = PREFIX + suffix
            routes.append(Route(template, self.endpoint(handler, template), methods=methods))
        return routes

    # -- configuration ---------------------------------------------------------------------------
    def _config_handler(self, part: str):
        async def handler(request: Request) -> Response:
            config = self.state.data["config"]
            if request.method == "GET":
                return JSONResponse(config[part])
            body, error = await _json_object(request)
            if error is not None:
                return error
            if part == "ssl_enforcement":
                requested = body.get("requestedConfig")
                if not isinstance(requested, dict) or not isinstance(requested.get("database"),
                                                                     bool):
                    return _bad_request("requestedConfig.database must be a boolean")
                with self.state.lock:
                    config[part] = {"currentConfig": {"database": requested["database"]},
                                    "appliedSuccessfully": True}
                    self.state.save()
                return JSONResponse(config[part])
            unknown = sorted(set(body) - self.updatable[part])
            if unknown:
                return _bad_request(f"property {unknown[0]} should not exist")
            with self.state.lock:
                if part == "pooler":
                    for entry in config["pooler"]:
                        if entry["database_type"] == "PRIMARY":
                            entry.update(body)
                            answer = {"default_pool_size": entry["default_pool_size"],
                                      "pool_mode": entry["pool_mode"]}
                elif part == "storage":
                    _deep_merge(config["storage"], body)
                    answer = None
                else:
                    config[part].update(body)
                    answer = copy.deepcopy(config[part])
                    answer.pop("jwt_secret", None)  # the PATCH answer is V1PostgrestConfigResponse
                self.state.save()
            if answer is None:
                return Response(status_code=200)
            return JSONResponse(answer if part != "auth" else config["auth"])

        return handler

    async def apply_network_restrictions(self, request: Request) -> Response:
        body, error = await _json_object(request)
        if error is not None:
            return error
        for key in ("dbAllowedCidrs", "dbAllowedCidrsV6"):
            value = body.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return _bad_request(f"{key} must be an array of strings")
        with self.state.lock:
            current = self.state.data["config"]["network_restrictions"]
            now = _now()
            self.state.data["config"]["network_restrictions"] = {
                "entitlement": current["entitlement"],
                "config": {"dbAllowedCidrs": body.get("dbAllowedCidrs", []),
                           "dbAllowedCidrsV6": body.get("dbAllowedCidrsV6", [])},
                "old_config": current["config"],
                "status": "applied", "updated_at": now, "applied_at": now,
            }
            self.state.save()
        return JSONResponse(self.state.data["config"]["network_restrictions"], status_code=201)

    async def api_keys(self, request: Request) -> Response:
        reveal = request.query_params.get("reveal", "false").lower() == "true"
        keys = copy.deepcopy(self.state.data["config"]["api_keys"])
        for key in keys:
            if key.get("type") == "secret" and not reveal:
                key["api_key"] = key["prefix"] + "·" * 16
        return JSONResponse(keys)

    # -- functions -------------------------------------------------------------------------------
    async def list_functions(self, request: Request) -> Response:
        return JSONResponse(list(self.state.data["functions"].values()))

    def _function(self, request: Request) -> tuple[dict | None, Response | None]:
        slug = request.path_params["slug"]
        function = self.state.data["functions"].get(slug) if SLUG_PATTERN.match(slug) else None
        if function is None:
            return None, JSONResponse({"message": "Function not found"}, status_code=404)
        return function, None

    async def get_function(self, request: Request) -> Response:
        function, error = self._function(request)
        return error or JSONResponse(function)

    async def function_body(self, request: Request) -> Response:
        function, error = self._function(request)
        if error is not None:
            return error
        return FileResponse(self.state.body_path(function["slug"]),
                            media_type="application/octet-stream")

    async def deploy_function(self, request: Request) -> Response:
        slug = request.query_params.get("slug", "")
        if not SLUG_PATTERN.match(slug):
            return _bad_request("slug must match ^[A-Za-z0-9_-]+$")
        try:
            form = await request.form()
        except MultiPartException as exc:
            return _bad_request(f"expected multipart/form-data: {exc.message}")
        try:
            metadata = json.loads(form.get("metadata") or "")
        except ValueError:
            return _bad_request("metadata must be a JSON object")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("entrypoint_path"), str):
            return _bad_request("metadata.entrypoint_path is required")
        files = {}
        for upload in form.getlist("file"):
            if isinstance(upload, str):
                return _bad_request("file parts must be files")
            files[upload.filename or "index.ts"] = await upload.read()
        if not files:
            return _bad_request("at least one file part is required")
        body = _function_zip(files)
        now_ms = int(time.time() * 1000)
        with self.state.lock:
            previous = self.state.data["functions"].get(slug)
            function = {
                "id": previous["id"] if previous else str(uuid.uuid4()),
                "slug": slug, "name": metadata.get("name") or slug, "status": "ACTIVE",
                "version": previous["version"] + 1 if previous else 1,
                "created_at": previous["created_at"] if previous else now_ms,
                "updated_at": now_ms,
                "verify_jwt": bool(metadata.get("verify_jwt", True)),
                "import_map": bool(metadata.get("import_map_path")),
                "entrypoint_path": metadata["entrypoint_path"],
                "ezbr_sha256": hashlib.sha256(body).hexdigest(),
            }
            if metadata.get("import_map_path"):
                function["import_map_path"] = metadata["import_map_path"]
            self.state.body_path(slug).write_bytes(body)
            self.state.data["functions"][slug] = function
            self.state.save()
        return JSONResponse(function, status_code=201)

    # -- secrets ---------------------------------------------------------------------------------
    async def secrets(self, request: Request) -> Response:
        stored = self.state.data["secrets"]
        if request.method == "GET":
            return JSONResponse([
                {"name": name, "value": hashlib.sha256(entry["value"].encode()).hexdigest(),
                 "updated_at": entry["updated_at"]}
                for name, entry in sorted(stored.items())
            ])
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return _bad_request("body must be JSON")
        if not isinstance(body, list) or not all(
                isinstance(item, dict) and isinstance(item.get("name"), str)
                and isinstance(item.get("value"), str) for item in body):
            return _bad_request("body must be an array of {name, value}")
        for item in body:
            if item["name"].startswith("SUPABASE_"):
                return _bad_request("Secret name must not start with the SUPABASE_ prefix.")
        with self.state.lock:
            for item in body:
                stored[item["name"]] = {"value": item["value"], "updated_at": _now()}
            self.state.save()
        return Response(status_code=201)


def _deep_merge(target: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = value


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _bad_request(message: str) -> Response:
    return JSONResponse({"message": message}, status_code=400)


async def _json_object(request: Request) -> tuple[dict, Response | None]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return {}, _bad_request("body must be JSON")
    if not isinstance(body, dict):
        return {}, _bad_request("body must be a JSON object")
    return body, None
