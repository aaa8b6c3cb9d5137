"""Every route of the plugin, enumerated from its own OpenAPI schema, refuses a caller without an
Airflow user (401), a forged token (403) and a user without the route's permission (403)."""

from __future__ import annotations

import httpx
import pytest

# Each route's permission on the supabase_backup DAG (SPEC §3). A route added to the app without a
# line here fails test_the_schema_lists_exactly_these_routes.
PERMISSIONS = {
    ("POST", "/api/v1/runs"): "trigger",
    ("GET", "/api/v1/runs/{run_id}"): "read",
    ("GET", "/api/v1/history"): "read",
    ("POST", "/api/v1/history/{history_id}/download-url"): "trigger",
    ("GET", "/api/v1/settings"): "read",
    ("PUT", "/api/v1/settings"): "edit",
    ("GET", "/api/v1/me"): "authenticated",
    ("GET", "/ui"): "read",
}
# Bodies that pass validation, so a refusal can only come from authentication or permission.
BODIES = {("PUT", "/api/v1/settings"): {"backup_enabled": True},
          ("POST", "/api/v1/runs"): {"include_storage": False}}
PATH_VALUES = {"run_id": "no-such-run", "history_id": "999999999"}


def schema_routes(plugin) -> list[tuple[str, str]]:
    schema = httpx.get(f"{plugin.url}/openapi.json", timeout=30).json()
    return sorted((method.upper(), path) for path, operations in schema["paths"].items()
                  for method in operations)


def request(plugin, method: str, path: str, *, user: str | None, token: str | None = None):
    concrete = path.format(**PATH_VALUES)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if user:
        headers = {"Authorization": f"Bearer {plugin.services.token(user)}"}
    return httpx.request(method, f"{plugin.url}{concrete}", headers=headers, timeout=30,
                         json=BODIES.get((method, path)), follow_redirects=False)


def test_the_schema_lists_exactly_these_routes(plugin):
    assert schema_routes(plugin) == sorted(PERMISSIONS)


def test_no_user_is_401_and_a_forged_token_403_on_every_route(plugin):
    forged = plugin.services.token("admin")[:-4] + "AAAA"
    for method, path in schema_routes(plugin):
        reply = request(plugin, method, path, user=None)
        assert reply.status_code == 401, (method, path, reply.text)
        assert reply.json() == {"detail": "Not authenticated"}
        reply = request(plugin, method, path, user=None, token=forged)
        assert reply.status_code == 403, (method, path, reply.text)


@pytest.mark.parametrize("user, allowed", [
    ("viewer", {"read", "authenticated"}),
    ("operator", {"read", "trigger", "edit", "authenticated"}),
])
def test_each_route_checks_the_users_permission_on_the_dag(plugin, user, allowed):
    for method, path in schema_routes(plugin):
        if (method, path) in BODIES and PERMISSIONS[(method, path)] in allowed:
            continue  # these would act (start a run, switch backups); covered by the run tests
        reply = request(plugin, method, path, user=user)
        if PERMISSIONS[(method, path)] in allowed:
            assert reply.status_code not in (401, 403), (user, method, path, reply.text)
        else:
            assert reply.status_code == 403, (user, method, path, reply.text)
            assert reply.json() == {"detail": "Forbidden"}


def test_me_tells_the_page_what_to_offer(plugin):
    assert plugin.call("GET", "/api/v1/me", user="viewer").json() == {
        "name": "viewer", "can_read": True, "can_trigger": False, "can_edit_settings": False}
    assert plugin.call("GET", "/api/v1/me", user="operator").json() == {
        "name": "operator", "can_read": True, "can_trigger": True, "can_edit_settings": True}


def test_the_page_is_registered_and_its_committed_bundle_served(plugin, plugin_airflow):
    plugins = plugin_airflow.api("GET", "/api/v2/plugins", user="viewer").json()["plugins"]
    ours = next(item for item in plugins if item["name"] == "supabase_backup")
    assert {(app["destination"], app["url_route"]) for app in ours["react_apps"]} == {
        ("nav", "backups"), ("dag", "supabase-backups")}
    bundle = httpx.get(f"{plugin_airflow.url}{ours['react_apps'][0]['bundle_url']}", timeout=30)
    assert bundle.status_code == 200
    assert "javascript" in bundle.headers["content-type"]  # the UI import()s it as a module
    assert "AirflowPlugin" in bundle.text
    assert request(plugin, "GET", "/ui", user="viewer").headers["location"] == "../plugin/backups"
