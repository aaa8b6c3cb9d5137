"""The Auth admin stand-in: paging, headers, user shape, no password hashes."""

from __future__ import annotations

import httpx


def test_admin_users_paging_headers(api, db):
    total = db.execute("SELECT count(*) FROM auth.users").fetchone()[0]
    assert total == 120
    seen, page = [], 1
    while True:
        r = api.get("/auth/v1/admin/users", params={"page": page, "per_page": 50})
        assert r.status_code == 200
        assert r.headers["X-Total-Count"] == str(total)
        body = r.json()
        assert body["aud"] == "authenticated"
        users = body["users"]
        seen += users
        last = -(-total // 50)
        if page < last:
            assert r.headers["Link"] == (f'</admin/users?page={page + 1}&per_page=50>; rel="next", '
                                         f'</admin/users?page={last}&per_page=50>; rel="last"')
        else:
            assert r.headers["Link"] == f'</admin/users?page={last}&per_page=50>; rel="last"'
        if len(users) < 50:
            break
        page += 1
    assert page == 3 and len(seen) == total
    assert len({u["id"] for u in seen}) == total
    created = [u["created_at"] for u in seen]
    assert created == sorted(created, reverse=True)  # created_at desc


def test_admin_users_defaults_and_shape(api):
    r = api.get("/auth/v1/admin/users")
    users = r.json()["users"]
    assert len(users) == 50  # default per_page
    assert r.headers["Link"] == '</admin/users?page=2>; rel="next", </admin/users?page=3>; rel="last"'
    for u in users:
        assert {"id", "aud", "role", "email", "phone", "app_metadata", "user_metadata", "identities",
                "created_at", "updated_at", "is_anonymous"} <= set(u)
        assert "encrypted_password" not in u and "password" not in u
    # an empty page past the end
    r = api.get("/auth/v1/admin/users", params={"page": 99, "per_page": 50})
    assert r.json()["users"] == []


def test_no_password_hash_anywhere(api, db):
    hashes = {r[0] for r in db.execute("SELECT encrypted_password FROM auth.users WHERE encrypted_password <> ''")}
    assert hashes and all(h.startswith("$2a$10$") for h in hashes)
    text = api.get("/auth/v1/admin/users", params={"per_page": 1000}).text
    assert "$2a$" not in text
    assert not any(h in text for h in hashes)


def test_create_get_delete_user(api):
    r = api.post("/auth/v1/admin/users", json={"email": "new.user@example.com", "password": "s3cret-pass",
                                               "email_confirm": True, "user_metadata": {"full_name": "New User"}})
    assert r.status_code == 200, r.text
    user = r.json()
    assert user["email"] == "new.user@example.com" and "encrypted_password" not in user
    try:
        r = api.get("/auth/v1/admin/users", params={"per_page": 1})
        assert r.headers["X-Total-Count"] == "121"
        assert r.json()["users"][0]["id"] == user["id"]  # newest first
        assert api.get(f"/auth/v1/admin/users/{user['id']}").json()["id"] == user["id"]
        dup = api.post("/auth/v1/admin/users", json={"email": "new.user@example.com"})
        assert dup.status_code == 422 and dup.json()["error_code"] == "email_exists"
    finally:
        assert api.delete(f"/auth/v1/admin/users/{user['id']}").status_code == 200
    r = api.get(f"/auth/v1/admin/users/{user['id']}")
    assert r.status_code == 404 and r.json() == {"code": 404, "error_code": "user_not_found", "msg": "User not found"}


def test_auth_errors(sbx):
    url = f"{sbx['api_url']}/auth/v1/admin/users"
    r = httpx.get(url)
    assert r.status_code == 401 and r.json()["error_code"] == "no_authorization"
    r = httpx.get(url, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error_code"] == "bad_jwt"
    assert set(r.json()) == {"code", "error_code", "msg"}
    r = httpx.get(url, headers={"Authorization": f"Bearer {sbx['anon_key']}"})
    assert r.status_code == 403 and r.json()["error_code"] == "not_admin"
