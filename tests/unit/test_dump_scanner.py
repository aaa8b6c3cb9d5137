"""dump_scanner: a plain dump proves itself whole whatever the chunks it arrives in."""

import pytest

from supabase_backup.archive.dump_scanner import CLUSTER_TRAILER, DumpScanner
from tests.unit.test_database import WHOLE_DUMP


def scan(data: bytes, chunk: int, trailer=None):
    scanner = DumpScanner(trailer) if trailer else DumpScanner()
    for start in range(0, len(data), chunk):
        scanner.feed(data[start:start + chunk])
    return scanner.finish()


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 7, 64, 10**6])
def test_any_chunking_gives_the_same_counts(chunk):
    contents = scan(WHOLE_DUMP, chunk)
    assert contents.problem() is None
    assert contents.copy_rows == {("public", "orders"): 3, ("My S", "My T"): 0}


def test_every_cut_is_found():
    """Cut anywhere before the trailer, the dump is refused; only trailing comments may go."""
    end = WHOLE_DUMP.index(b"-- PostgreSQL database dump complete") + len(
        b"-- PostgreSQL database dump complete\n")
    for cut in range(end - 1):
        assert scan(WHOLE_DUMP[:cut], 5).problem(), cut
    assert scan(WHOLE_DUMP[:end], 5).problem() is None


def test_a_copy_line_outside_a_data_entry_is_not_data():
    """A function body may hold a line that looks like a COPY header; only a TABLE DATA entry's
    first statement opens a block."""
    body = (b"CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$\n"
            b"COPY public.fake (a) FROM stdin;\n$$;\n")
    contents = scan(body + WHOLE_DUMP[WHOLE_DUMP.index(b"--\n-- Data for"):], 3)
    assert contents.problem() is None and ("public", "fake") not in contents.copy_rows


def test_a_long_copy_line_and_long_rows_are_handled_with_a_bounded_head():
    columns = ", ".join(f"column_{number:04d}" for number in range(800))  # a 10 KB COPY line
    row = b"x" * 50_000 + b"\n"
    data = (b"-- Data for Name: wide; Type: TABLE DATA; Schema: public; Owner: -\n--\n\n"
            + f"COPY public.wide ({columns}) FROM stdin;\n".encode() + row * 7 + b"\\.\n"
            + b"--\n-- PostgreSQL database dump complete\n--\n")
    contents = scan(data, 4096)
    assert contents.problem() is None and contents.copy_rows == {("public", "wide"): 7}


def test_pg_dumpall_ends_with_its_own_trailer():
    roles = (b"--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict k\n\nCREATE ROLE app;\n\n"
             b"\\unrestrict k\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n")
    assert scan(roles, 7, CLUSTER_TRAILER).problem() is None
    assert "does not end with" in scan(roles, 7).problem()  # not a database dump's trailer
