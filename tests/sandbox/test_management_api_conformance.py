"""The Management API stand-in against the official OpenAPI description (sandbox/spec/).

Every answer the stand-in gives, for every operation it serves, is validated against the spec: the
status is one the operation declares, a JSON body matches the declared schema (and has no property
the schema lacks, so the stand-in cannot invent fields), and every request body the test sends
matches the declared request schema. 401 and 429 are declared by every operation without a schema;
their headers follow the rate-limit documentation (api_rate_limits.mdx).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import httpx
import pytest
from openapi_schema_validator import OAS30Validator

SPEC = json.loads((Path(__file__).parents[2] / "sandbox" / "spec" / "management_api_v1.json").read_text())
PREFIX = "/v1/projects/{ref}"


def operation(method: str, template: str) -> dict:
    return SPEC["paths"][PREFIX + template][method.lower()]


def schema_of(reference: dict) -> dict:
    while "$ref" in reference:
        reference = SPEC["components"]["schemas"][reference["$ref"].rsplit("/", 1)[1]]
    return reference


def validate(instance, schema: dict) -> None:
    OAS30Validator({**schema, "components": SPEC["components"]}).validate(instance)


def undeclared_properties(instance, schema: dict, where: str = "") -> list[str]:
    """Properties of ``instance`` that its object schema (followed into nested objects and arrays)
    does not declare."""
    schema = schema_of(schema)
    found = []
    if isinstance(instance, dict) and "properties" in schema:
        for key, value in instance.items():
            if key not in schema["properties"]:
                if not schema.get("additionalProperties"):
                    found.append(f"{where}.{key}")
                continue
            found += undeclared_properties(value, schema["properties"][key], f"{where}.{key}")
    elif isinstance(instance, list) and "items" in schema:
        for index, item in enumerate(instance):
            found += undeclared_properties(item, schema["items"], f"{where}[{index}]")
    return found


def check_answer(response: httpx.Response, method: str, template: str) -> None:
    declared = operation(method, template)["responses"]
    status = str(response.status_code)
    assert status in declared, f"{method} {template} answered {status}, the spec declares {sorted(declared)}"
    content = declared[status].get("content")
    if not content:
        return
    schema = content["application/json"]["schema"]
    if template.endswith("/body"):
        return  # StreamableFile: bytes, see test_function_body_is_the_deployable_bundle
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    validate(body, schema)
    assert undeclared_properties(body, schema) == [], f"{method} {template}"


def check_request(body, method: str, template: str, media: str = "application/json") -> None:
    validate(body, operation(method, template)["requestBody"]["content"][media]["schema"])


@pytest.fixture(scope="module")
def management(sbx):
    headers = {"Authorization": f"Bearer {sbx['management_token']}"}
    base = f"{sbx['api_url']}/v1/projects/{sbx['project_ref']}"
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        yield client


GET_ENDPOINTS = [
    "/config/auth",
    "/postgrest",
    "/config/storage",
    "/config/database/postgres",
    "/config/database/pooler",
    "/network-restrictions",
    "/ssl-enforcement",
    "/config/auth/sso/providers",
    "/custom-hostname",
    "/api-keys",
    "/functions",
    "/functions/{function_slug}",
    "/functions/{function_slug}/body",
    "/secrets",
]


def test_the_spec_file_holds_every_served_operation():
    info = SPEC["info"]["x-trimmed-from"]
    assert "api_v1_openapi.json" in info["source"] and info["trimmed_on"]
    for template in GET_ENDPOINTS:
        assert "get" in SPEC["paths"][PREFIX + template]


@pytest.mark.parametrize("template", GET_ENDPOINTS)
def test_every_get_answer_matches_the_spec(management, template):
    response = management.get(template.replace("{function_slug}", "hello-world"))
    assert response.status_code == 200, response.text
    check_answer(response, "GET", template)
    for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert int(response.headers[header]) >= 0


@pytest.mark.parametrize("template", GET_ENDPOINTS)
def test_a_missing_or_wrong_token_is_the_specs_401(sbx, template):
    url = f"{sbx['api_url']}/v1/projects/{sbx['project_ref']}{template.replace('{function_slug}', 'hello-world')}"
    for headers in ({}, {"Authorization": "Bearer sbp_" + "0" * 40}, {"Authorization": sbx["management_token"]}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401
        check_answer(response, "GET", template)
        assert response.json() == {"message": "Unauthorized"}


def test_another_projects_ref_is_the_specs_403(sbx, management):
    response = httpx.get(f"{sbx['api_url']}/v1/projects/{'z' * 20}/config/auth",
                         headers={"Authorization": f"Bearer {sbx['management_token']}"})
    assert response.status_code == 403
    check_answer(response, "GET", "/config/auth")


def test_the_rate_limit_answers_429_with_its_headers(management, faults):
    faults(management_rate_limit=2, management_rate_window_seconds=60)
    answers = [management.get("/config/database/postgres") for _ in range(3)]
    assert [a.status_code for a in answers][-1] == 429
    limited = answers[-1]
    check_answer(limited, "GET", "/config/database/postgres")
    assert limited.headers["X-RateLimit-Limit"] == "2"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(limited.headers["X-RateLimit-Reset"]) <= 60
    assert limited.json() == {"message": "Too Many Requests"}
    # Per endpoint: another endpoint still answers.
    assert management.get("/ssl-enforcement").status_code == 200


def test_function_body_is_the_deployable_bundle(management):
    function = management.get("/functions/hello-world").json()
    body = management.get("/functions/hello-world/body")
    check_answer(body, "GET", "/functions/{function_slug}/body")
    assert hashlib.sha256(body.content).hexdigest() == function["ezbr_sha256"]
    with zipfile.ZipFile(io.BytesIO(body.content)) as bundle:
        assert "Deno.serve" in bundle.read("index.ts").decode()


def test_an_unknown_function_is_404(management):
    assert management.get("/functions/no-such-function").status_code == 404


def test_secrets_list_names_and_digests_never_values(sbx, management):
    response = management.get("/secrets")
    check_answer(response, "GET", "/secrets")
    assert sbx["management_canary"] not in response.text
    assert {s["name"] for s in response.json()} >= {"STRIPE_SECRET_KEY", "OPENAI_API_KEY"}


def test_secret_api_keys_are_masked_unless_revealed(sbx, management):
    masked = management.get("/api-keys")
    assert sbx["service_key"] not in masked.text
    revealed = management.get("/api-keys", params={"reveal": "true"})
    check_answer(revealed, "GET", "/api-keys")
    assert sbx["service_key"] in revealed.text


UPDATES = [
    ("PATCH", "/config/auth", {"site_url": "https://app.example.com", "jwt_exp": 7200}),
    ("PATCH", "/postgrest", {"max_rows": 500, "db_schema": "public,api"}),
    ("PATCH", "/config/storage", {"fileSizeLimit": 104857600,
                                  "features": {"imageTransformation": {"enabled": False}}}),
    ("PUT", "/config/database/postgres", {"statement_timeout": "10s", "max_connections": 90}),
    ("PATCH", "/config/database/pooler", {"default_pool_size": 25, "pool_mode": "session"}),
    ("POST", "/network-restrictions/apply", {"dbAllowedCidrs": ["192.0.2.0/24"], "dbAllowedCidrsV6": []}),
    ("PUT", "/ssl-enforcement", {"requestedConfig": {"database": False}}),
]


@pytest.mark.parametrize(("method", "template", "body"), UPDATES)
def test_every_change_matches_the_spec_and_a_later_get_reflects_it(management, method, template, body):
    check_request(body, method, template)
    response = management.request(method, template, json=body)
    assert response.status_code in (200, 201), response.text
    check_answer(response, method, template)
    read_back = template.removesuffix("/apply")
    after = management.get(read_back)
    check_answer(after, "GET", read_back)
    state = after.json()
    if template == "/config/database/pooler":
        state = state[0]
    elif template == "/network-restrictions/apply":
        state = state["config"]
    elif template == "/ssl-enforcement":
        assert state["currentConfig"] == {"database": False}
        return
    for key, value in body.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                assert state[key][inner] == inner_value
        else:
            assert state[key] == value


def test_every_operation_in_the_spec_file_is_exercised_here():
    exercised = {("get", template) for template in GET_ENDPOINTS}
    exercised |= {(method.lower(), template) for method, template, _ in UPDATES}
    exercised |= {("post", "/functions/deploy"), ("post", "/secrets")}
    in_spec = {(method, path.removeprefix(PREFIX)) for path, operations in SPEC["paths"].items()
               for method in operations}
    assert exercised == in_spec


def test_an_unknown_property_is_refused(management):
    response = management.patch("/postgrest", json={"not_a_setting": 1})
    assert response.status_code == 400


def test_a_deployed_function_is_listed_and_its_body_served(management):
    metadata = {"entrypoint_path": "index.ts", "name": "Report Mailer", "verify_jwt": False}
    check_request({"metadata": metadata}, "POST", "/functions/deploy", "multipart/form-data")
    source = b'Deno.serve(() => new Response("sent"));\n'
    response = management.post("/functions/deploy", params={"slug": "report-mailer"},
                               data={"metadata": json.dumps(metadata)},
                               files=[("file", ("index.ts", source, "application/typescript"))])
    assert response.status_code == 201, response.text
    check_answer(response, "POST", "/functions/deploy")
    listed = management.get("/functions")
    check_answer(listed, "GET", "/functions")
    assert "report-mailer" in {f["slug"] for f in listed.json()}
    body = management.get("/functions/report-mailer/body")
    with zipfile.ZipFile(io.BytesIO(body.content)) as bundle:
        assert bundle.read("index.ts") == source
    again = management.post("/functions/deploy", params={"slug": "report-mailer"},
                            data={"metadata": json.dumps(metadata)},
                            files=[("file", ("index.ts", source, "application/typescript"))])
    assert again.json()["version"] == response.json()["version"] + 1


def test_created_secrets_are_listed_by_name(management):
    body = [{"name": "RESEND_API_KEY", "value": "re_conformance"}]
    check_request(body, "POST", "/secrets")
    response = management.post("/secrets", json=body)
    assert response.status_code == 201
    check_answer(response, "POST", "/secrets")
    listed = management.get("/secrets").json()
    entry = next(s for s in listed if s["name"] == "RESEND_API_KEY")
    assert entry["value"] == hashlib.sha256(b"re_conformance").hexdigest()
