"""Deterministic seed data for the sandbox (users, buckets, objects, app tables).

Objects are written straight into storage.objects plus DIR/blobs/<object id>, so the seed can hold
names the API would refuse (as older projects and direct SQL do).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import mimetypes
import os
import random
import struct
import uuid
import zlib
from pathlib import Path
from typing import Callable, Iterable

from psycopg.types.json import Jsonb

from .common import NIL_UUID, connect, storage_metadata

SEED = 20241125
BASE_TIME = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

FIRST = ["ada", "alan", "grace", "linus", "margaret", "ken", "barbara", "dennis", "frances", "john",
         "radia", "tim", "edsger", "donald", "sophie", "guido", "yukihiro", "anders", "brendan", "bjarne"]
LAST = ["lovelace", "turing", "hopper", "torvalds", "hamilton", "thompson", "liskov", "ritchie", "allen",
        "backus", "perlman", "berners-lee", "dijkstra", "knuth", "wilson", "rossum", "matsumoto", "hejlsberg"]
WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
         "et dolore magna aliqua backup storage bucket object archive restore snapshot database schema "
         "policy function trigger invoice order project document customer payment shipping").split()
CACHE_CONTROLS = ["max-age=3600", "max-age=3600", "no-cache", "max-age=31536000, immutable", "public, max-age=60"]
BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


# ------------------------------------------------------------------------------------------------
# content helpers
# ------------------------------------------------------------------------------------------------
def png_bytes(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jpeg_like(rng: random.Random, n: int) -> bytes:
    # JFIF header + incompressible payload + EOI: looks like a JPEG to sniffers, is not decodable
    return (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
            + rng.randbytes(n) + b"\xff\xd9")


def text_blob(rng: random.Random, n_words: int) -> bytes:
    return (" ".join(rng.choice(WORDS) for _ in range(n_words)) + "\n").encode()


def fake_bcrypt(rng: random.Random) -> str:
    return "$2a$10$" + "".join(rng.choice(BCRYPT_ALPHABET) for _ in range(53))


def rng_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# ------------------------------------------------------------------------------------------------
# objects
# ------------------------------------------------------------------------------------------------
class ObjectWriter:
    """Collects object rows, writes blobs immediately and rows in batches."""

    def __init__(self, conn, blobs_dir: str, rng: random.Random):
        self.conn = conn
        self.blobs = Path(blobs_dir)
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.rng = rng
        self.rows: list[tuple] = []
        self.count = 0
        self.bytes = 0

    def add(self, bucket: str, name: str, data: bytes | Iterable[bytes], mimetype: str,
            cache_control: str | None = None, when: dt.datetime | None = None, owner: str | None = None,
            user_metadata: dict | None = None) -> str:
        object_id = rng_uuid(self.rng)
        md5 = hashlib.md5()
        size = 0
        with open(self.blobs / object_id, "wb") as fh:
            chunks = [data] if isinstance(data, (bytes, bytearray)) else data
            for chunk in chunks:
                md5.update(chunk)
                size += len(chunk)
                fh.write(chunk)
        when = when or BASE_TIME + dt.timedelta(minutes=self.rng.randrange(0, 500_000))
        cache_control = cache_control or self.rng.choice(CACHE_CONTROLS)
        md = storage_metadata(md5.hexdigest(), size, mimetype, cache_control, when)
        self.rows.append((object_id, bucket, name, owner, owner, Jsonb(md), rng_uuid(self.rng), when, when, when,
                          Jsonb(user_metadata) if user_metadata is not None else None))
        self.count += 1
        self.bytes += size
        if len(self.rows) >= 1000:
            self.flush()
        return object_id

    def flush(self) -> None:
        if not self.rows:
            return
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO storage.objects (id, bucket_id, name, owner, owner_id, metadata, version, created_at, "
                "updated_at, last_accessed_at, user_metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                self.rows)
        self.rows = []


def add_buckets(conn, buckets: list[dict]) -> None:
    with conn.cursor() as cur:
        for b in buckets:
            cur.execute(
                "INSERT INTO storage.buckets (id, name, public, file_size_limit, allowed_mime_types, created_at, "
                "updated_at) VALUES (%(id)s, %(id)s, %(public)s, %(limit)s, %(mimes)s, %(at)s, %(at)s) "
                "ON CONFLICT (id) DO NOTHING",
                {"id": b["id"], "public": b.get("public", False), "limit": b.get("file_size_limit"),
                 "mimes": b.get("allowed_mime_types"), "at": b.get("created_at", BASE_TIME)})


def _big_chunks(rng: random.Random, total: int):
    left = total
    while left > 0:
        n = min(1 << 20, left)
        yield rng.randbytes(n)
        left -= n


def seed_objects(conn, s: dict, size: str, rng: random.Random, user_ids: list[str], log) -> dict:
    medium = size == "medium"
    buckets = [
        {"id": "avatars", "public": False, "file_size_limit": 5 * 1024 * 1024,
         "allowed_mime_types": ["image/png", "image/jpeg", "image/webp"]},
        {"id": "documents", "public": False},
        {"id": "public-assets", "public": True},
        {"id": "empty-bucket", "public": False},
    ]
    add_buckets(conn, buckets)
    w = ObjectWriter(conn, s["blobs_dir"], rng)

    # avatars: one folder per user (owner = the user), some with placeholders
    for i, uid in enumerate(user_ids[: (400 if medium else 25)]):
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if i % 3 == 0:
            w.add("avatars", f"{uid}/avatar.jpg", jpeg_like(rng, 2000 + rng.randrange(4000)), "image/jpeg",
                  owner=uid)
        else:
            w.add("avatars", f"{uid}/avatar.png", png_bytes(16 + i % 16, 16, color), "image/png", owner=uid)
        if i % 7 == 0:
            w.add("avatars", f"{uid}/.emptyFolderPlaceholder", b"", "application/octet-stream", owner=uid)

    # documents: nested folders, a >100 folder for v1 paging, odd names
    for q in range(1, 5):
        for n in range(1, 4):
            w.add("documents", f"reports/2024/q{q}/report-{n:03d}.txt", text_blob(rng, 200 + 50 * n), "text/plain")
        w.add("documents", f"reports/2024/q{q}/summary.json",
              json.dumps({"quarter": q, "revenue": rng.randrange(10**6), "ok": True}).encode(), "application/json")
    w.add("documents", "reports/.emptyFolderPlaceholder", b"", "application/octet-stream")
    w.add("documents", "reports/2024/.emptyFolderPlaceholder", b"", "application/octet-stream")
    for n in range(105):  # one folder above the v1 default page (100)
        w.add("documents", f"logs/app-{n:04d}.log", text_blob(rng, 5 + n % 20), "text/plain",
              cache_control="no-cache")
    w.add("documents", "logs/empty.log", b"", "text/plain")
    w.add("documents", "blobs/data.bin", rng.randbytes(64 * 1024), "application/octet-stream")
    w.add("documents", "blobs/zero.bin", b"", "application/octet-stream")
    w.add("documents", "my folder/my file.txt", b"spaces in both the folder and the file name\n", "text/plain")
    w.add("documents", "my folder/sub folder/notes 2024.txt", text_blob(rng, 30), "text/plain")
    w.add("documents", "deep/l1/l2/l3/l4/l5/leaf.txt", b"five levels down\n", "text/plain")
    # accepted by the API but nasty
    for name in ["a//b", "trailing/", "/leading.txt", "..hidden", "a..b", "q?/what?.txt",
                 "it's & ok=yes;@:+,$!*", "Case/x.txt", "case/y.txt"]:
        w.add("documents", name, f"object named {name!r}\n".encode(), "text/plain")
    # refused by today's API, held by the database (older projects, direct SQL)
    for name in ["café/naïve ☃.txt", "100% done.txt", "dot/../escape.txt", "back\\slash.txt", "hash#1.txt"]:
        w.add("documents", name, f"legacy object named {name!r}\n".encode(), "text/plain")

    # public assets
    w.add("public-assets", "index.html", b"<!doctype html><title>sandbox</title><h1>hello</h1>\n", "text/html",
          cache_control="public, max-age=60")
    w.add("public-assets", "css/site.css", b"body { font-family: sans-serif; }\n", "text/css")
    w.add("public-assets", "img/logo.png", png_bytes(64, 32, (40, 200, 120)), "image/png",
          cache_control="max-age=31536000, immutable")
    w.add("public-assets", "img/hero.jpg", jpeg_like(rng, 48 * 1024), "image/jpeg")
    w.add("public-assets", "img/icons/.emptyFolderPlaceholder", b"", "application/octet-stream")
    w.add("public-assets", "data/config.json", json.dumps({"feature": True, "n": 3}).encode(), "application/json")

    if medium:
        log("medium: 2,000-object folder, deep tree, 200 MiB object")
        for n in range(2000):
            w.add("documents", f"bulk/item-{n:05d}.json",
                  json.dumps({"n": n, "v": rng.random()}).encode(), "application/json")
        for a in range(3):
            for b in range(3):
                for c in range(3):
                    for d in range(2):
                        w.add("documents", f"tree/a{a}/b{b}/c{c}/d{d}/e/file-{a}{b}{c}{d}.txt",
                              text_blob(rng, 10), "text/plain")
        for n in range(300):
            w.add("public-assets", f"gallery/{n // 100}/photo-{n:04d}.jpg", jpeg_like(rng, 3000 + rng.randrange(20000)),
                  "image/jpeg")
        big_rng = random.Random(SEED + 1)
        w.add("documents", "big/archive-200mb.bin", _big_chunks(big_rng, 200 * 1024 * 1024 + 12345),
              "application/octet-stream", cache_control="no-cache")
    w.flush()
    return {"buckets": len(buckets), "objects": w.count, "object_bytes": w.bytes}


# ------------------------------------------------------------------------------------------------
# users
# ------------------------------------------------------------------------------------------------
def _user_row(rng: random.Random, i: int, created: dt.datetime) -> tuple[dict, list[dict]]:
    uid = rng_uuid(rng)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    kind = i % 20
    email = f"{first}.{last}.{i}@example.{'com' if i % 3 else 'org'}"
    phone = f"1555{i:07d}" if i % 9 == 0 else None
    confirmed = created + dt.timedelta(minutes=5) if kind != 3 else None
    last_sign_in = created + dt.timedelta(days=rng.randrange(0, 200)) if confirmed else None
    app_md = {"provider": "email", "providers": ["email"]}
    user_md = {"full_name": f"{first.title()} {last.title()}",
               "avatar_url": f"https://example.com/a/{i}.png", "locale": rng.choice(["en", "fr", "de", "ja"])}
    banned = created + dt.timedelta(days=3650) if kind == 7 else None
    is_anon = kind == 11
    identities = []
    if is_anon:
        email, phone, confirmed, app_md, user_md = None, None, None, {}, {}
    else:
        identities.append({"provider_id": uid, "provider": "email",
                           "identity_data": {"sub": uid, "email": email, "email_verified": bool(confirmed),
                                             "phone_verified": False}})
        if kind in (5, 15):
            gid = str(100000000000000000000 + i)
            app_md = {"provider": "email", "providers": ["email", "google"]}
            identities.append({"provider_id": gid, "provider": "google",
                               "identity_data": {"sub": gid, "email": email, "email_verified": True,
                                                 "name": user_md["full_name"], "iss": "https://accounts.google.com"}})
    if kind == 13:
        app_md = {**app_md, "roles": ["admin"], "tenant": "acme"}
    row = {
        "instance_id": NIL_UUID, "id": uid, "aud": "authenticated", "role": "authenticated", "email": email,
        "encrypted_password": fake_bcrypt(rng) if not is_anon else "",
        "email_confirmed_at": confirmed, "invited_at": created if kind == 9 else None,
        "confirmation_token": "" if confirmed else f"{rng.getrandbits(224):056x}",
        "confirmation_sent_at": created if not confirmed and not is_anon else None,
        "recovery_token": "", "email_change_token_new": "", "email_change": "",
        "last_sign_in_at": last_sign_in, "raw_app_meta_data": Jsonb(app_md), "raw_user_meta_data": Jsonb(user_md),
        "is_super_admin": False, "created_at": created, "updated_at": last_sign_in or created,
        "phone": phone, "phone_confirmed_at": created if phone and kind != 3 else None,
        "banned_until": banned, "is_sso_user": False, "deleted_at": None, "is_anonymous": is_anon,
    }
    return row, identities


USER_INSERT_COLS = ["instance_id", "id", "aud", "role", "email", "encrypted_password", "email_confirmed_at",
                    "invited_at", "confirmation_token", "confirmation_sent_at", "recovery_token",
                    "email_change_token_new", "email_change", "last_sign_in_at", "raw_app_meta_data",
                    "raw_user_meta_data", "is_super_admin", "created_at", "updated_at", "phone",
                    "phone_confirmed_at", "banned_until", "is_sso_user", "deleted_at", "is_anonymous"]


def insert_users(conn, rows: list[dict], identities: list[dict]) -> int:
    cols = ", ".join(USER_INSERT_COLS)
    vals = ", ".join(f"%({c})s" for c in USER_INSERT_COLS)
    with conn.cursor() as cur:
        before = cur.execute("SELECT count(*) FROM auth.users").fetchone()[0]
        cur.executemany(f"INSERT INTO auth.users ({cols}) VALUES ({vals}) ON CONFLICT DO NOTHING", rows)
        if identities:
            cur.executemany(
                "INSERT INTO auth.identities (id, provider_id, user_id, identity_data, provider, last_sign_in_at, "
                "created_at, updated_at) SELECT %(id)s, %(provider_id)s, %(user_id)s, %(identity_data)s, "
                "%(provider)s, %(at)s, %(at)s, %(at)s WHERE EXISTS (SELECT 1 FROM auth.users WHERE id = %(user_id)s) "
                "ON CONFLICT DO NOTHING", identities)
        after = cur.execute("SELECT count(*) FROM auth.users").fetchone()[0]
    return after - before


def seed_users(conn, size: str, rng: random.Random) -> list[str]:
    n = 2600 if size == "medium" else 120
    rows, idents = [], []
    for i in range(n):
        created = BASE_TIME + dt.timedelta(hours=3 * i, seconds=rng.randrange(0, 3600))
        row, identities = _user_row(rng, i, created)
        rows.append(row)
        for ident in identities:
            idents.append({"id": rng_uuid(rng), "user_id": row["id"], "at": created,
                           **{**ident, "identity_data": Jsonb(ident["identity_data"])}})
    insert_users(conn, rows, idents)
    return [r["id"] for r in rows]


def load_users_file(s: dict, users_file: str | os.PathLike) -> int:
    """Load users from a JSON array: {email, id?, phone?, user_metadata?, app_metadata?, created_at?}."""
    data = json.loads(Path(users_file).read_text())
    if not isinstance(data, list):
        raise ValueError("users file must hold a JSON array")
    rng = random.Random(SEED + 7)
    rows, idents = [], []
    now = dt.datetime.now(dt.timezone.utc)
    for item in data:
        if not isinstance(item, dict) or not (item.get("email") or item.get("phone")):
            raise ValueError(f"user entry needs an email: {item!r}")
        uid = item.get("id") or str(uuid.uuid4())
        created = dt.datetime.fromisoformat(item["created_at"].replace("Z", "+00:00")) if item.get("created_at") else now
        email = item.get("email").lower() if item.get("email") else None
        app_md = item.get("app_metadata") or {"provider": "email", "providers": ["email"]}
        rows.append({
            "instance_id": NIL_UUID, "id": uid, "aud": "authenticated", "role": "authenticated", "email": email,
            "encrypted_password": fake_bcrypt(rng), "email_confirmed_at": created, "invited_at": None,
            "confirmation_token": "", "confirmation_sent_at": None, "recovery_token": "",
            "email_change_token_new": "", "email_change": "", "last_sign_in_at": None,
            "raw_app_meta_data": Jsonb(app_md), "raw_user_meta_data": Jsonb(item.get("user_metadata") or {}),
            "is_super_admin": False, "created_at": created, "updated_at": created, "phone": item.get("phone"),
            "phone_confirmed_at": None, "banned_until": None, "is_sso_user": False, "deleted_at": None,
            "is_anonymous": False,
        })
        if email:
            idents.append({"id": str(uuid.uuid4()), "provider_id": uid, "user_id": uid, "provider": "email",
                           "at": created, "identity_data": Jsonb({"sub": uid, "email": email,
                                                                  "email_verified": True})})
    with connect(s, autocommit=False) as conn:
        added = insert_users(conn, rows, idents)
        conn.commit()
    return added


# ------------------------------------------------------------------------------------------------
# app data
# ------------------------------------------------------------------------------------------------
APP_SQL = """
SELECT setseed(0.4242);
INSERT INTO public.organizations (slug, name, plan, settings, created_at)
SELECT 'org-' || g, initcap((ARRAY['acme','globex','initech','umbrella','hooli','stark','wayne','tyrell'])[1 + g %% 8])
       || ' ' || g, (ARRAY['free','pro','team','enterprise'])[1 + g %% 4],
       jsonb_build_object('seats', 5 + g %% 50, 'sso', g %% 5 = 0),
       timestamptz '2024-01-01' + g * interval '1 day'
FROM generate_series(1, %(orgs)s) g;

INSERT INTO public.memberships (organization_id, user_id, role)
SELECT 1 + ((p.rn * 7 + k) %% %(orgs)s), p.id, (ARRAY['owner','admin','member','viewer'])[1 + (p.rn + k) %% 4]::public.member_role
FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM public.profiles) p, generate_series(0, 1) k;

INSERT INTO public.projects (organization_id, name, description, tags, budget, archived, created_by, created_at)
SELECT 1 + g %% %(orgs)s, 'Project ' || g, 'Description of project ' || g,
       ARRAY[(ARRAY['web','mobile','infra','data','ml'])[1 + g %% 5]], round((random() * 100000)::numeric, 2),
       g %% 11 = 0, p.a[1 + g %% array_length(p.a, 1)],
       timestamptz '2024-02-01' + g * interval '2 hours'
FROM generate_series(1, %(projects)s) g, (SELECT array_agg(id ORDER BY id) AS a FROM public.profiles) p;

INSERT INTO public.documents (project_id, title, body, storage_path, created_by, created_at)
SELECT 1 + g %% %(projects)s, 'Document ' || g,
       (SELECT string_agg(w.a[1 + ((g * 31 + i * 17) %% array_length(w.a, 1))], ' ')
          FROM generate_series(1, 5 + g %% 40) i),
       CASE WHEN g %% 10 = 0 THEN 'reports/2024/q' || (1 + g %% 4) || '/report-001.txt' END,
       p.a[1 + (g * 3) %% array_length(p.a, 1)], timestamptz '2024-03-01' + g * interval '17 minutes'
FROM generate_series(1, %(documents)s) g, (SELECT array_agg(id ORDER BY id) AS a FROM public.profiles) p,
     (SELECT ARRAY['alpha','beta','gamma','delta','backup','restore','policy','schema','invoice','report',
                   'storage','bucket','snapshot','verify','archive'] AS a) w;

INSERT INTO public.orders (organization_id, customer_id, status, total_cents, currency, shipping_address, placed_at)
SELECT 1 + g %% %(orgs)s, p.a[1 + (g * 5) %% array_length(p.a, 1)],
       (ARRAY['pending','paid','shipped','cancelled','refunded'])[1 + g %% 5]::public.order_status,
       0, (ARRAY['USD','EUR','GBP'])[1 + g %% 3],
       jsonb_build_object('city', (ARRAY['Paris','Berlin','Tokyo','Austin','Lagos'])[1 + g %% 5], 'zip', lpad((g %% 99999)::text, 5, '0')),
       timestamptz '2024-01-15' + g * interval '9 minutes'
FROM generate_series(1, %(orders)s) g, (SELECT array_agg(id ORDER BY id) AS a FROM public.profiles) p;

INSERT INTO public.order_items (order_id, sku, description, quantity, unit_price_cents)
SELECT 1 + g %% %(orders)s, 'SKU-' || lpad((g %% 500)::text, 4, '0'), 'Item ' || g, 1 + g %% 5,
       100 + (random() * 10000)::int
FROM generate_series(1, %(items)s) g;

UPDATE public.orders o SET total_cents = t.total FROM (
    SELECT order_id, sum(quantity * unit_price_cents)::bigint AS total FROM public.order_items GROUP BY order_id) t
WHERE t.order_id = o.id;
REFRESH MATERIALIZED VIEW public.monthly_revenue;
SELECT setval('public.invoice_number_seq', (SELECT max(invoice_number) FROM public.orders));
"""


def seed_app(conn, size: str, n_users: int) -> dict:
    scale = {"orgs": 12, "projects": 40, "documents": 300, "orders": 500, "items": 900} if size == "small" else \
            {"orgs": 200, "projects": 2000, "documents": 20000, "orders": 30000, "items": 60000}
    params = {**scale, "users": max(n_users, 1)}
    with conn.cursor() as cur:
        for stmt in APP_SQL.split(";\n"):
            if stmt.strip():
                cur.execute(stmt, params)
        # large objects referenced from documents
        cur.execute("UPDATE public.documents SET attachment = lo_from_bytea(0, convert_to(repeat('sandbox large object ', 200), 'UTF8')) "
                    "WHERE id = (SELECT id FROM public.documents ORDER BY created_at LIMIT 1)")
        cur.execute("UPDATE public.documents SET attachment = lo_from_bytea(0, %s) "
                    "WHERE id = (SELECT id FROM public.documents ORDER BY created_at OFFSET 1 LIMIT 1)",
                    (png_bytes(32, 32, (200, 30, 30)),))
        if size == "medium":
            cur.execute("UPDATE public.documents SET attachment = lo_from_bytea(0, %s) "
                        "WHERE id = (SELECT id FROM public.documents ORDER BY created_at OFFSET 2 LIMIT 1)",
                        (random.Random(SEED + 2).randbytes(1024 * 1024),))
        counts = {}
        for table in ("organizations", "profiles", "memberships", "projects", "documents", "orders", "order_items",
                      "events"):
            counts[table] = cur.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]
    return counts


# ------------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------------
def seed(s: dict, size: str, log: Callable[[str], None] = lambda m: None) -> dict:
    rng = random.Random(SEED)
    with connect(s, autocommit=False) as conn:
        log("users")
        user_ids = seed_users(conn, size, rng)
        conn.commit()
        log("app tables")
        app_counts = seed_app(conn, size, len(user_ids))
        conn.commit()
        log("buckets and objects")
        obj = seed_objects(conn, s, size, rng, user_ids, log)
        conn.commit()
    with connect(s, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return {"size": size, "users": len(user_ids), **obj, "tables": app_counts,
            "seeded_at": dt.datetime.now(dt.timezone.utc).isoformat()}


def load_objects_dir(s: dict, objects_dir: str | os.PathLike) -> int:
    """Load a local tree: one subfolder per bucket, every file an object (key = relative path)."""
    root = Path(objects_dir)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    n = 0
    with connect(s, autocommit=False) as conn:
        bucket_dirs = sorted(d for d in root.iterdir() if d.is_dir())
        add_buckets(conn, [{"id": d.name} for d in bucket_dirs])
        for d in bucket_dirs:
            for path in sorted(p for p in d.rglob("*") if p.is_file()):
                key = path.relative_to(d).as_posix()
                n += upsert_object(conn, s, d.name, key, path.read_bytes() if path.stat().st_size < (8 << 20)
                                   else _file_chunks(path),
                                   mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        conn.commit()
    return n


def _file_chunks(path: Path):
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


def upsert_object(conn, s: dict, bucket: str, key: str, data: bytes | Iterable[bytes], mimetype: str,
                  cache_control: str = "max-age=3600") -> int:
    """Insert or replace one object by direct SQL (no key validation: names are data)."""
    row = conn.execute("SELECT id FROM storage.objects WHERE bucket_id = %s AND name = %s", (bucket, key)).fetchone()
    object_id = str(row[0]) if row else str(uuid.uuid4())
    md5, size = hashlib.md5(), 0
    tmp = Path(s["blobs_dir"]) / f".tmp-{object_id}"
    with open(tmp, "wb") as fh:
        for chunk in ([data] if isinstance(data, (bytes, bytearray)) else data):
            md5.update(chunk)
            size += len(chunk)
            fh.write(chunk)
    now = dt.datetime.now(dt.timezone.utc)
    md = Jsonb(storage_metadata(md5.hexdigest(), size, mimetype, cache_control, now))
    if row:
        conn.execute("UPDATE storage.objects SET metadata = %s, version = %s WHERE id = %s",
                     (md, str(uuid.uuid4()), object_id))
    else:
        conn.execute("INSERT INTO storage.objects (id, bucket_id, name, metadata, version) VALUES (%s, %s, %s, %s, %s)",
                     (object_id, bucket, key, md, str(uuid.uuid4())))
    os.replace(tmp, Path(s["blobs_dir"]) / object_id)
    return 1


def add_objects(s: dict, bucket: str, items: Iterable[tuple[str, bytes, str]]) -> int:
    """Helper for tests: insert (name, bytes, mimetype) objects by direct SQL, creating the bucket."""
    n = 0
    with connect(s, autocommit=False) as conn:
        add_buckets(conn, [{"id": bucket}])
        for name, data, mimetype in items:
            n += upsert_object(conn, s, bucket, name, data, mimetype)
        conn.commit()
    return n
