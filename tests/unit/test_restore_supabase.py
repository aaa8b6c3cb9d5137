"""restore_supabase: which pg_dump entries run on a fresh Supabase project, and how cron jobs and
migration histories are read, on a small hand-made plain dump."""

from supabase_backup.archive.dump_text import decode_copy_field
from supabase_backup.restore.supabase import (
    SupabaseFilter,
    SupabaseTarget,
    comparable_figures,
    plan_roles,
    scan_supabase_dump,
)


def entry(name, entry_type, schema, body):
    return [f"--\n", f"-- Name: {name}; Type: {entry_type}; Schema: {schema}; Owner: -\n", "--\n",
            "\n", *[line + "\n" for line in body], "\n"]


DUMP = [
    "SET statement_timeout = 0;\n", "\\restrict KEY\n",
    *entry("auth", "SCHEMA", "-", ["CREATE SCHEMA auth;"]),
    *entry("app", "SCHEMA", "-", ["CREATE SCHEMA app;"]),
    *entry("pg_cron", "EXTENSION", "-", ["CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA pg_catalog;"]),
    *entry("citext", "EXTENSION", "-", ["CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA extensions;"]),
    *entry("EXTENSION citext", "COMMENT", "-", ["COMMENT ON EXTENSION citext IS 'x';"]),
    *entry("users", "TABLE", "auth", ["CREATE TABLE auth.users (id uuid);"]),
    *entry("notes", "TABLE", "app", ["CREATE TABLE app.notes (id int);"]),
    *entry("users", "TABLE DATA", "auth", ["COPY auth.users (id, email) FROM stdin;", "1\ta@x", "\\."]),
    *entry("schema_migrations", "TABLE DATA", "auth",
           ["COPY auth.schema_migrations (version) FROM stdin;", "20240101", "20250101", "\\."]),
    *entry("migrations", "TABLE DATA", "storage",
           ["COPY storage.migrations (id, name, hash, executed_at) FROM stdin;",
            "0\tcreate-migrations-table\th\t2026", "\\."]),
    *entry("subscription", "TABLE DATA", "realtime", ["COPY realtime.subscription (id) FROM stdin;", "1", "\\."]),
    *entry("job", "TABLE DATA", "cron",
           ["COPY cron.job (jobid, schedule, command, nodename, nodeport, database, username, active, jobname) FROM stdin;",
            "1\t0 3 * * *\tdelete from t where a = 'x'\\tb\tlocalhost\t5432\tpostgres\tpostgres\tt\tnightly",
            "2\t* * * * *\tselect 1\tlocalhost\t5432\tpostgres\tpostgres\tf\t\\N", "\\."]),
    *entry("notes", "TABLE DATA", "app", ["COPY app.notes (id) FROM stdin;", "7", "\\."]),
    *entry("users on_auth_user_created", "TRIGGER", "auth",
           ["CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION app.f();"]),
    *entry("objects update_objects_updated_at", "TRIGGER", "storage", ["CREATE TRIGGER update_objects_updated_at …;"]),
    *entry("objects Owners read", "POLICY", "storage",
           ['CREATE POLICY "Owners read" ON storage.objects FOR SELECT TO reporting USING (true);']),
    *entry("issue_graphql_placeholder", "EVENT TRIGGER", "-", ["CREATE EVENT TRIGGER x …;"]),
    *entry("supabase_realtime", "PUBLICATION", "-", ["CREATE PUBLICATION supabase_realtime;"]),
    *entry("16001", "BLOB", "-", ["SELECT pg_catalog.lo_create('16001');"]),
    *entry("BLOBS", "BLOBS", "-", ["BEGIN;", "SELECT pg_catalog.lo_open('16001', 131072);", "COMMIT;"]),
]


def target(**overrides):
    values = {"extensions_to_create": [("citext", "extensions")], "roles_to_create": ["reporting"],
              "triggers": {("storage", "objects", "update_objects_updated_at")}, "policies": set(),
              "database": "postgres"}
    return SupabaseTarget(**{**values, **overrides})


def test_scan_reads_extensions_roles_loaded_columns_and_migration_histories():
    scan = scan_supabase_dump(DUMP)
    assert scan.extensions == {"pg_cron": "pg_catalog", "citext": "extensions"}
    assert scan.roles == {"reporting"}
    assert scan.loaded_columns == {("auth", "users"): ["id", "email"]}
    assert scan.migration_versions == {("auth", "schema_migrations"): ["20240101", "20250101"],
                                       ("storage", "migrations"): ["create-migrations-table"]}


def test_filter_runs_user_schemas_and_managed_rows_only():
    dump_filter = SupabaseFilter(target())
    output = "".join(dump_filter.filter(DUMP))
    assert output.startswith("SET session_replication_role = replica;\n"
                             "CREATE EXTENSION IF NOT EXISTS \"citext\" WITH SCHEMA \"extensions\";\n"
                             "CREATE ROLE \"reporting\" NOLOGIN;\n")
    assert "\\restrict KEY" in output and "CREATE SCHEMA app;" in output
    assert "CREATE SCHEMA auth;" not in output and "CREATE TABLE auth.users" not in output
    assert "CREATE TABLE app.notes" in output and "COPY app.notes (id) FROM stdin;\n7\n\\.\n" in output
    assert "COPY auth.users (id, email) FROM stdin;\n1\ta@x\n\\.\n" in output
    assert "schema_migrations" not in output and "storage.migrations" not in output
    assert "realtime.subscription" not in output
    assert "CREATE TRIGGER on_auth_user_created" in output
    assert "update_objects_updated_at" not in output  # the project has its own
    assert 'CREATE POLICY "Owners read"' in output
    assert "EVENT TRIGGER" not in output and "PUBLICATION" not in output
    assert "COMMENT ON EXTENSION" not in output and "CREATE EXTENSION IF NOT EXISTS pg_cron" not in output
    assert "lo_create('16001')" in output and "lo_open" in output
    assert "BEGIN;" not in output and "COMMIT;" not in output
    assert "SELECT cron.schedule('nightly', '0 3 * * *', 'delete from t where a = ''x''\tb');" in output
    assert ("SELECT cron.schedule_in_database(NULL, '* * * * *', 'select 1', 'postgres', NULL, false);"
            in output)
    assert "COPY cron.job" not in output
    assert dump_filter.added == ["trigger on_auth_user_created on auth.users",
                                 "policy Owners read on storage.objects"]
    assert dump_filter.kept_existing == ["trigger update_objects_updated_at on storage.objects"]
    assert dump_filter.loaded_tables == ["auth.users"] and dump_filter.large_objects == 1
    assert dump_filter.cron_jobs == ["nightly", "job 2"]


def test_copy_fields_decode_like_postgres_text_format():
    assert decode_copy_field("\\N") is None
    assert decode_copy_field("a\\tb\\\\c\\nd") == "a\tb\\c\nd"


def test_comparable_figures_count_managed_tables_and_leave_out_migration_histories():
    recorded = [{"schema": "public", "table": "t", "rows": 1, "checksum": "a"},
                {"schema": "auth", "table": "users", "rows": 2, "checksum": "b"},
                {"schema": "auth", "table": "schema_migrations", "rows": 77, "checksum": "c"},
                {"schema": "realtime", "table": "subscription", "rows": 0, "checksum": "d"}]
    entries, not_compared = comparable_figures(recorded)
    assert entries == [recorded[0], {**recorded[1], "checksum": None}]
    assert set(not_compared) == {"auth.schema_migrations", "realtime.subscription"}


ROLES = """\\restrict KEY
CREATE ROLE anon;
ALTER ROLE anon WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE analyst;
ALTER ROLE analyst WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION BYPASSRLS;
CREATE ROLE "Old Reader";
ALTER ROLE "Old Reader" WITH NOSUPERUSER NOINHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE supabase_admin;
ALTER ROLE analyst SET statement_timeout TO '30s';
ALTER ROLE anon SET statement_timeout TO '3s';
GRANT "Old Reader" TO analyst GRANTED BY postgres;
GRANT authenticated TO analyst WITH INHERIT TRUE GRANTED BY postgres;
GRANT analyst TO authenticator GRANTED BY postgres;
GRANT anon TO authenticator GRANTED BY postgres;
""".splitlines(keepends=True)


def test_roles_plan_creates_only_missing_custom_roles_without_superuser_attributes():
    plan = plan_roles(ROLES, existing={"anon", "authenticated", "authenticator", "Old Reader"})
    assert plan.created == ["analyst"]
    assert plan.statements == [
        'CREATE ROLE "analyst" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION;\n',
        "ALTER ROLE analyst SET statement_timeout TO '30s';\n",
        'GRANT "Old Reader" TO "analyst";\n',
        'GRANT "authenticated" TO "analyst" WITH INHERIT TRUE;\n',
    ]
    assert plan.dropped_attributes == ["analyst: BYPASSRLS"]
    assert plan.left_out == ["analyst to authenticator (a role Supabase reserves)"]
