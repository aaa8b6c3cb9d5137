"""table_figures.compare_figures: what counts as a difference and what is only not compared."""

from supabase_backup.sources.table_figures import TableFigures, compare_figures


def recorded(schema, table, rows, checksum="c" * 32, **extra):
    return {"schema": schema, "table": table, "rows": rows, "checksum": checksum, **extra}


def test_equal_figures_compare_clean_and_differences_name_the_table():
    backup = [recorded("public", "a", 2), recorded("public", "b", 3, checksum=None),
              recorded("auth", "users", 1)]
    restored = [TableFigures("public", "a", 2, "c" * 32, 10), TableFigures("public", "b", 3, None, 10),
                TableFigures("auth", "users", 1, "c" * 32, 10)]
    result = compare_figures(backup, restored)
    assert result.ok and (result.compared, result.checksums_compared, result.rows) == (3, 2, 6)

    restored[0] = TableFigures("public", "a", 2, "d" * 32, 10)
    restored[1] = TableFigures("public", "b", 4, None, 10)
    result = compare_figures(backup, restored[:2] + [TableFigures("public", "extra", 0, "e", 1)])
    assert [line.split(":")[0] for line in result.differences] == [
        "public.a", "public.b", "auth.users", "public.extra"]
    assert "4 rows restored, 3 at dump time" in result.differences[1]
    assert "missing from the restored database" in result.differences[2]


def test_skipped_extension_schemas_and_old_manifests_are_listed_not_failed():
    backup = [recorded("cron", "job", 1), {"schema": "public", "table": "old", "row_estimate": 5}]
    result = compare_figures(backup, [TableFigures("public", "old", 5, None, 1)],
                             not_compared_schemas={"cron": "extension pg_cron is not available"})
    assert result.ok and result.compared == 0
    assert result.not_compared == ["cron.job: extension pg_cron is not available",
                                   "public.old: the manifest has no exact figures for it"]
