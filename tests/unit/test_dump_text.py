"""archive/dump_text.py: one identifier rule (Postgres' own) and one line scanner for both
restores: quoted, upper-case and embedded-quote names, and COPY data that only looks like SQL."""

import pytest

from supabase_backup.restore.database import DumpFilter, scan_dump
from supabase_backup.archive.dump_text import (
    LineKind,
    created_extension,
    decode_copy_field,
    identifiers_in,
    quote_identifier,
    quote_literal,
    read_dump,
    roles_named_in,
    split_qualified,
    unquote_identifier,
)
from supabase_backup.restore.supabase import plan_roles, scan_supabase_dump


@pytest.mark.parametrize(
    ("written", "name"),
    [
        ("users", "users"),
        ("Users", "users"),  # unquoted: folded to lower case
        ('"Users"', "Users"),  # quoted: as written
        ('"say ""hi"""', 'say "hi"'),  # "" inside quotes is one "
        ('"a.b, c"', "a.b, c"),
        ("ÉTÉ", "ÉtÉ"),  # only ASCII folds (a UTF-8 server folds nothing else)
        ('  "Padded"  ', "Padded"),
    ],
)
def test_an_identifier_names_what_postgres_would(written, name):
    assert unquote_identifier(written) == name


@pytest.mark.parametrize("name", ["users", "Users", 'say "hi"', "a.b, c", "select", "ÉTÉ", '"'])
def test_quoting_then_unquoting_gives_the_name_back(name):
    assert unquote_identifier(quote_identifier(name)) == name


def test_lists_and_qualified_names_split_at_separators_outside_quotes():
    assert identifiers_in('anon, "Weird, Role", Authenticated') == [
        "anon", "Weird, Role", "authenticated"]
    assert split_qualified('public."My.Table"') == ("public", "My.Table")
    assert split_qualified('"My""Schema".t') == ('My"Schema', "t")
    assert split_qualified("t") == (None, "t")


def test_literals_and_copy_fields():
    assert quote_literal("it's") == "'it''s'" and quote_literal(None) == "NULL"
    assert decode_copy_field("\\N") is None
    assert decode_copy_field("a\\tb\\\\c\\nd") == "a\tb\\c\nd"


def test_extensions_and_roles_follow_the_same_rule():
    assert created_extension('CREATE EXTENSION IF NOT EXISTS "PgMq" WITH SCHEMA "Q";') == (
        "PgMq", "Q")
    assert created_extension("CREATE EXTENSION pg_cron WITH SCHEMA pg_catalog;") == (
        "pg_cron", "pg_catalog")
    assert created_extension("CREATE TABLE x ();") is None
    assert roles_named_in('GRANT ALL ON TABLE public.t TO "Admins", Anon, PUBLIC;') == {
        "Admins", "anon"}
    assert roles_named_in('ALTER TABLE public.t OWNER TO "o""k";') == {'o"k'}


DUMP = [
    "--\n",
    "-- Name: t; Type: TABLE DATA; Schema: public; Owner: -\n",
    "--\n",
    'COPY public."T" (id, "Note", "say ""x""") FROM stdin;\n',
    "1\tCREATE EXTENSION pg_cron;\tx\n",
    "2\t-- Name: job; Type: TABLE DATA; Schema: cron; Owner: -\tx\n",
    "3\tGRANT ALL ON TABLE public.t TO ghost;\tx\n",
    "\\.\n",
    "GRANT SELECT ON TABLE public.t\n",
    "    TO reader;\n",
]


def test_the_scanner_says_what_each_line_is_and_carries_the_copy_target():
    lines = list(read_dump(DUMP, statements=True))
    assert [line.kind for line in lines] == [
        LineKind.SQL, LineKind.ENTRY_HEADER, LineKind.SQL, LineKind.COPY_START,
        LineKind.COPY_ROW, LineKind.COPY_ROW, LineKind.COPY_ROW, LineKind.COPY_END,
        LineKind.SQL, LineKind.SQL]
    assert lines[1].entry.type == "TABLE DATA" and lines[1].entry.schema == "public"
    assert lines[5].copy.table == ("public", "T")
    assert lines[5].copy.columns == ("id", "Note", 'say "x"')
    assert lines[9].statement == "GRANT SELECT ON TABLE public.t     TO reader;"
    assert "".join(line.line for line in lines) == "".join(DUMP)


def test_copy_rows_that_look_like_sql_are_data_to_both_scans_and_the_filter():
    scan = scan_dump(DUMP)
    assert scan.extensions == {} and scan.roles == {"reader"}
    supabase_scan = scan_supabase_dump(DUMP)
    assert supabase_scan.extensions == {} and supabase_scan.entries == 1
    assert supabase_scan.roles == {"reader"}
    dump_filter = DumpFilter(frozenset({"pg_cron"}))
    assert "".join(dump_filter.filter(DUMP)) == "".join(DUMP)
    assert dump_filter.skipped_entries == []


def test_role_names_in_roles_sql_follow_the_rule_too():
    plan = plan_roles(['CREATE ROLE "Reporting";\n', "CREATE ROLE Loader;\n",
                       'ALTER ROLE "Reporting" WITH NOSUPERUSER INHERIT NOLOGIN;\n',
                       'GRANT "Reporting" TO loader GRANTED BY postgres;\n'], set())
    assert plan.created == ["Reporting", "loader"]
    assert plan.statements[0] == 'CREATE ROLE "Reporting" WITH NOSUPERUSER INHERIT NOLOGIN;\n'
    assert 'GRANT "Reporting" TO "loader";\n' in plan.statements
