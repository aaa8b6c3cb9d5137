"""The dump scan (extensions, roles) and the filter that leaves out a skipped extension."""

import io

import pytest

from supabase_backup.restore.database import DumpFilter, scan_dump

# Shaped like pg_dump 15 plain output of a Supabase project with pg_cron (--no-owner
# --no-privileges): every entry has its "-- Name: …; Type: …; Schema: …; Owner: -" header.
DUMP = r"""--
-- PostgreSQL database dump
--

\restrict abc123

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: pg_cron; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA pg_catalog;


--
-- Name: EXTENSION pg_cron; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON EXTENSION pg_cron IS 'Job scheduler for PostgreSQL';


--
-- Name: pgcrypto; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;


--
-- Name: uuid-ossp; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA extensions;


--
-- Name: todos; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.todos (
    id bigint NOT NULL,
    task text
);


--
-- Data for Name: job; Type: TABLE DATA; Schema: cron; Owner: -
--

COPY cron.job (jobid, schedule, command, nodename, nodeport, database, username, active, jobname) FROM stdin;
1	0 3 * * *	DELETE FROM public.todos WHERE done	localhost	5432	postgres	postgres	t	nightly
\.


--
-- Data for Name: todos; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.todos (id, task) FROM stdin;
1	--
2	-- Name: x; Type: TABLE; Schema: cron; Owner: -
\.


--
-- Name: jobid_seq; Type: SEQUENCE SET; Schema: cron; Owner: -
--

SELECT pg_catalog.setval('cron.jobid_seq', 1, true);


--
-- Name: todos Users see their todos; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY "Users see their todos" ON public.todos FOR SELECT TO authenticated, "Weird Role" USING ((auth.uid() = user_id));


--
-- Name: todos anyone; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY anyone ON public.todos AS RESTRICTIVE TO anon, service_role
  USING (true);

CREATE POLICY everyone ON public.todos USING (true);

GRANT USAGE ON SCHEMA public TO PUBLIC;
GRANT SELECT ON TABLE public.todos TO pg_read_all_data;
ALTER TABLE public.todos OWNER TO supabase_admin;

\unrestrict abc123
"""


def lines():
    return io.StringIO(DUMP)


def test_the_scan_finds_extensions_with_their_schemas_and_the_roles_named():
    scan = scan_dump(lines())
    assert scan.extensions == {"pg_cron": "pg_catalog", "pgcrypto": "extensions",
                               "uuid-ossp": "extensions"}
    # PUBLIC and pg_* roles are never created; COPY data that looks like SQL is not read as SQL.
    assert scan.roles == {"authenticated", "Weird Role", "anon", "service_role", "supabase_admin"}


def test_skipping_pg_cron_leaves_out_its_entries_and_nothing_else():
    dump_filter = DumpFilter(frozenset({"pg_cron"}))
    kept = "".join(dump_filter.filter(lines()))
    assert "pg_cron" not in kept and "cron." not in kept.replace("-- Name: x; Type: TABLE; Schema: cron", "")
    assert dump_filter.skipped_entries == [
        "EXTENSION pg_cron", "COMMENT EXTENSION pg_cron", "TABLE DATA job in schema cron",
        "SEQUENCE SET jobid_seq in schema cron"]
    # Everything else is there byte for byte, COPY data lines that look like headers included.
    for expected in ("\\restrict abc123", "CREATE EXTENSION IF NOT EXISTS pgcrypto", "CREATE TABLE public.todos",
                     "2\t-- Name: x; Type: TABLE; Schema: cron; Owner: -\n\\.\n", "CREATE POLICY anyone",
                     "\\unrestrict abc123"):
        assert expected in kept


def test_without_skips_the_filter_is_the_identity():
    assert "".join(DumpFilter(frozenset()).filter(lines())) == DUMP


@pytest.mark.parametrize("extension", ["pgcrypto", "uuid-ossp"])
def test_skipping_an_extension_in_a_shared_schema_leaves_only_its_own_entry_out(extension):
    dump_filter = DumpFilter(frozenset({extension}))
    kept = "".join(dump_filter.filter(lines()))
    assert dump_filter.skipped_entries == [f"EXTENSION {extension}"]
    assert f"EXISTS {extension}" not in kept.replace('"', "") and "COPY cron.job" in kept


def test_the_large_object_section_does_not_end_the_one_transaction():
    """pg_dump 15 writes BEGIN; … COMMIT; around large-object data: under --single-transaction that
    COMMIT would commit everything before it and leave the rest in autocommit."""
    blobs = ("--\n-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -\n--\n\nBEGIN;\n\n"
             "SELECT pg_catalog.lo_open('16867', 131072);\nSELECT pg_catalog.lowrite(0, '\\x41');\n"
             "SELECT pg_catalog.lo_close(0);\n\nCOMMIT;\n\n")
    dump_filter = DumpFilter(frozenset())
    kept = "".join(dump_filter.filter(io.StringIO(blobs + "COPY public.t (a) FROM stdin;\nCOMMIT;\n\\.\n")))
    assert "BEGIN;" not in kept and kept.count("COMMIT;") == 1  # the one left is COPY data
    assert "lowrite(0, '\\x41')" in kept and dump_filter.transaction_lines == 2
