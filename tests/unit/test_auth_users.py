"""auth_users: paging to a short page, deduplication, X-Total-Count reconciliation, the streamed file."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Callable

import httpx
import pytest
from airflow.sdk import ObjectStoragePath

from supabase_backup.sources.api_client import ApiSettings
from supabase_backup.sources.auth_users import export_auth_users
from supabase_backup.errors import ApiUnauthorized, IncompleteExport

SECRET = "eyJhbGciOiJIUzI1NiJ9.service-role.never-shown"
SETTINGS = ApiSettings("http://127.0.0.1:54321", SECRET)



def make_user(number: int) -> dict:
    return {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "aud": "authenticated",
        "role": "authenticated",
        "email": f"user{number}@example.com",
        "created_at": f"2026-01-01T00:00:00.{number:06d}Z",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"name": f"Üser {number}", "tags": [1, 2.5, None, True]},
        "identities": [],
    }


class FakeAuth:
    """GoTrue's admin users route: offset paging over users sorted created_at desc, X-Total-Count."""

    def __init__(self, count: int, *, total_header: bool = True, max_per_page: int | None = None):
        self.users = [make_user(number) for number in range(1, count + 1)]
        self.next_number = count + 1
        self.total_header = total_header
        self.max_per_page = max_per_page
        self.requests: list[dict[str, str]] = []
        self.before_page: Callable[[int], None] | None = None  # called with the request count
        self.faults: list[str] = []
        self.lock = threading.Lock()

    def sign_up(self) -> dict:
        user = make_user(self.next_number)
        self.next_number += 1
        self.users.append(user)
        return user

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/auth/v1/admin/users"
        assert request.headers["apikey"] == SECRET
        with self.lock:
            self.requests.append(dict(request.url.params))
            if self.faults:
                fault = self.faults.pop(0)
                if fault == "503":
                    return httpx.Response(503, text="upstream connect error")
                if fault == "401":
                    return httpx.Response(401, json={"code": 401, "error_code": "bad_jwt", "msg": "invalid JWT"})
            if self.before_page:
                self.before_page(len(self.requests))
            page = int(request.url.params.get("page", 1))
            per_page = int(request.url.params.get("per_page", 50))
            if self.max_per_page:
                per_page = min(per_page, self.max_per_page)
            ordered = sorted(self.users, key=lambda user: user["created_at"], reverse=True)
            chunk = ordered[(page - 1) * per_page : page * per_page]
            headers = {"X-Total-Count": str(len(ordered))} if self.total_header else {}
            return httpx.Response(200, headers=headers, json={"users": chunk, "aud": "authenticated"})


def target_in(tmp_path) -> ObjectStoragePath:
    return ObjectStoragePath(f"file://{tmp_path}") / "run" / "auth" / "users.json"


def check_file(target: ObjectStoragePath, summary: dict) -> list[dict]:
    data = target.read_bytes()
    assert summary["bytes"] == len(data)
    assert summary["sha256"] == hashlib.sha256(data).hexdigest()
    users = json.loads(data)
    assert isinstance(users, list)
    ids = [user["id"] for user in users]
    assert len(ids) == len(set(ids)) == summary["users"]
    return users


def test_pages_until_a_short_page_with_explicit_per_page(tmp_path):
    fake = FakeAuth(2345)
    target = target_in(tmp_path)
    summary = export_auth_users(SETTINGS, target, per_page=1000, transport=fake.transport())

    assert fake.requests == [{"page": str(n), "per_page": "1000"} for n in (1, 2, 3)]
    users = check_file(target, summary)
    assert {user["id"] for user in users} == {user["id"] for user in fake.users}
    assert summary == {**summary, "users": 2345, "pages": 3, "total_reported": 2345, "passes": 1}
    # Users as the API returned them, in its order (newest first).
    assert users[0] == make_user(2345)
    assert users[-1] == make_user(1)


def test_a_full_last_page_is_followed_by_an_empty_one(tmp_path):
    fake = FakeAuth(2000)
    summary = export_auth_users(SETTINGS, target_in(tmp_path), per_page=1000, transport=fake.transport())
    assert summary["pages"] == 3 and summary["users"] == 2000


def test_no_users_is_an_empty_array(tmp_path):
    target = target_in(tmp_path)
    summary = export_auth_users(SETTINGS, target, transport=FakeAuth(0).transport())
    assert check_file(target, summary) == []
    assert summary["users"] == 0 and summary["pages"] == 1


def test_a_sign_up_while_paging_is_deduplicated_and_found_on_a_second_pass(tmp_path):
    fake = FakeAuth(25)
    signed_up = []
    fake.before_page = lambda request_number: signed_up.append(fake.sign_up()) if request_number == 2 else None
    target = target_in(tmp_path)
    summary = export_auth_users(SETTINGS, target, per_page=10, transport=fake.transport())

    users = check_file(target, summary)
    assert {user["id"] for user in users} == {user["id"] for user in fake.users}
    assert signed_up[0]["id"] in {user["id"] for user in users}
    assert summary["users"] == 26 and summary["total_reported"] == 26
    # Pass 1 saw a total change mid-way (25 then 26), so pass 2 ran and was consistent.
    assert summary["passes"] == 2
    assert summary["pages"] == 3 + 3


def test_a_deletion_while_paging_does_not_lose_the_skipped_user(tmp_path):
    fake = FakeAuth(25)

    def delete_newest_after_first_page(request_number: int) -> None:
        if request_number == 2:
            fake.users.remove(make_user(25))

    fake.before_page = delete_newest_after_first_page
    target = target_in(tmp_path)
    summary = export_auth_users(SETTINGS, target, per_page=10, transport=fake.transport())

    ids = {user["id"] for user in check_file(target, summary)}
    # The user shifted from page 2 onto page 1 by the deletion (number 15) was skipped by pass 1.
    assert {user["id"] for user in fake.users} <= ids
    assert summary["passes"] == 2
    assert summary["users"] == 25  # the deleted user, read before it went, stays in the backup


def test_without_a_total_one_pass_deduplicates(tmp_path):
    fake = FakeAuth(25, total_header=False)
    fake.before_page = lambda request_number: fake.sign_up() if request_number == 2 else None
    summary = export_auth_users(SETTINGS, target_in(tmp_path), per_page=10, transport=fake.transport())
    assert summary["passes"] == 1
    assert summary["total_reported"] is None
    assert summary["users"] == 25  # the newcomer pushed user 16 onto page 2 twice; it is written once


def test_still_short_after_the_passes_fails_with_the_numbers(tmp_path):
    # A server that silently caps per_page makes the first page look like the last one.
    fake = FakeAuth(250, max_per_page=100)
    with pytest.raises(IncompleteExport) as raised:
        export_auth_users(SETTINGS, target_in(tmp_path), per_page=1000, transport=fake.transport())
    message = str(raised.value)
    assert "250" in message and "100" in message and "3 passes" in message
    assert len(fake.requests) == 3


def test_transient_errors_are_retried(tmp_path):
    fake = FakeAuth(15)
    fake.faults = ["503", "503"]
    summary = export_auth_users(SETTINGS, target_in(tmp_path), per_page=10, transport=fake.transport())
    assert summary["users"] == 15
    assert len(fake.requests) == 2 + 2


def test_a_refused_key_fails_at_once_with_the_fix(tmp_path):
    fake = FakeAuth(5)
    fake.faults = ["401"]
    with pytest.raises(ApiUnauthorized) as raised:
        export_auth_users(SETTINGS, target_in(tmp_path), transport=fake.transport())
    assert "Supabase Auth" in str(raised.value) and SECRET not in str(raised.value)
    assert len(fake.requests) == 1
