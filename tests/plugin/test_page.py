"""The Backups page inside the real Airflow UI, in a headless Debian chromium (never a downloaded
browser): a viewer sees the history without controls; an operator backs up from the page, watches
the progress move while the sandbox holds the downloads, sees the new row, downloads the archive
through the page and gets the recorded sha256; a run triggered while Storage is down shows its
reason; the page follows the UI's light and dark colour modes.

Screenshots are saved under ``.artifacts/screenshots/`` (gitignored; ``SCREENSHOTS_DIR`` moves
them). ``make screenshots`` (``UPDATE_SCREENSHOTS=1``) also copies the three that the README shows
into ``docs/screenshots/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR", PROJECT_ROOT / ".artifacts" / "screenshots"))
COMMITTED = PROJECT_ROOT / "docs" / "screenshots"
# The ones the README shows; the others (light mode, incomplete) stay test artifacts.
SHOWN_IN_README = {"backups-page-success.png", "backups-page-failed.png", "backups-page-dark.png"}
RUN_TIMEOUT_MS = 600_000

# The progress element's numbers, read in the page.
READ_PROGRESS = """() => {
  const text = document.querySelector('[data-testid=storage-progress]');
  const bar = document.querySelector('[data-testid=progress-bar]');
  if (!text) return null;
  return {text: text.innerText, done: Number(text.dataset.objectsDone),
          bar: bar && bar.dataset.value !== '' ? Number(bar.dataset.value) : null};
}"""


def save_screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1" and name in SHOWN_IN_README:
        COMMITTED.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, COMMITTED / name)
    return path


@pytest.fixture(scope="module")
def browser():
    # Never a skip: CI installs chromium (.ci/run), and a skip would hide a missing install.
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the Backups page test needs Debian's chromium; "
                    ".ci/run installs it (apt-get install chromium). No browser is downloaded.",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, services, user: str, path: str = "/plugin/backups", *,
              colour_mode: str = "light"):
    context = browser.new_context(viewport={"width": 1400, "height": 900},
                                  color_scheme=colour_mode, accept_downloads=True)
    # The UI follows the system colour mode unless one was chosen (next-themes' "theme" key).
    context.add_init_script(f"window.localStorage.setItem('theme', '{colour_mode}');")
    # The UI's session is the _token cookie that its login form sets; the plugin reads it too.
    context.add_cookies([{"name": "_token", "value": services.token(user), "url": services.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{services.url}{path}")
    page.get_by_test_id("backups-page").wait_for(timeout=60_000)
    page.get_by_test_id("history").wait_for(timeout=60_000)
    return page, errors


def wait_for_held_download(sandbox, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not sandbox.held("download"):
        assert time.monotonic() < deadline, "the backup never reached the download hold"
        time.sleep(0.1)


# Any CSS colour (hex, rgb(), oklch() …) → [brightness 0..1, alpha 0..1], through a canvas.
BRIGHTNESS = """(colour) => {
  const probe = document.createElement('canvas').getContext('2d', {willReadFrequently: true});
  probe.clearRect(0, 0, 1, 1);
  probe.fillStyle = colour;
  probe.fillRect(0, 0, 1, 1);
  const [r, g, b, a] = probe.getImageData(0, 0, 1, 1).data;
  return [(0.2126 * r + 0.7152 * g + 0.0722 * b) / 255, a / 255];
}"""


def text_brightness(page, selector: str) -> float:
    """Brightness 0..1 of an element's text colour."""
    return page.evaluate(f"""(selector) => ({BRIGHTNESS})(
        getComputedStyle(document.querySelector(selector)).color)[0]""", selector)


def background_brightness(page, selector: str) -> float:
    """Brightness 0..1 of what is painted behind an element: the nearest ancestor with an opaque
    background, else the canvas of the document's colour scheme."""
    return page.evaluate(f"""(selector) => {{
        for (let e = document.querySelector(selector); e; e = e.parentElement) {{
          const [brightness, alpha] = ({BRIGHTNESS})(getComputedStyle(e).backgroundColor);
          if (alpha > 0.5) return brightness;
        }}
        return getComputedStyle(document.documentElement).colorScheme.includes('dark') ? 0.07 : 1;
    }}""", selector)


def row_of(page, run_id: str):
    return page.locator(f'[data-testid=history-row][data-run-id="{run_id}"]')


def test_a_viewer_sees_the_history_but_no_controls(browser, plugin_airflow):
    page, errors = open_page(browser, plugin_airflow, "viewer")
    page.get_by_text("Supabase backups").first.wait_for()
    page.get_by_test_id("enabled-state").wait_for()
    assert page.get_by_test_id("back-up-now").count() == 0
    assert page.get_by_test_id("enabled-switch").count() == 0
    assert page.get_by_role("switch").count() == 0
    assert page.get_by_role("button", name="Download").count() == 0
    assert errors == []
    page.context.close()


def test_an_operator_backs_up_watches_it_move_and_downloads_the_archive(
        browser, plugin_airflow, small_sandbox, tmp_path):
    sandbox = small_sandbox
    page, errors = open_page(browser, plugin_airflow, "operator")
    # Downloads after the next 3 wait until the test lets them go: the page shows a partial state.
    sandbox.set_faults(hold_downloads_after=3)
    try:
        page.get_by_test_id("back-up-now").click()
        page.get_by_test_id("run-progress").wait_for()
        wait_for_held_download(sandbox)
        page.wait_for_function(f"() => {{ const p = ({READ_PROGRESS})(); return p && p.done > 0; }}",
                               timeout=120_000)
        first = page.evaluate(READ_PROGRESS)
        assert page.get_by_test_id("run-state").inner_text() == "running"
        run_id = page.get_by_test_id("run-id").inner_text()

        # Let the held downloads and 3 more through, then hold again: the page must move on.
        sandbox.set_faults(hold_downloads_after=3)
        page.wait_for_function(
            f"() => {{ const p = ({READ_PROGRESS})(); return p && p.done > {first['done']}; }}",
            timeout=120_000)
        wait_for_held_download(sandbox)
        second = page.evaluate(READ_PROGRESS)
        assert page.get_by_test_id("run-state").inner_text() == "running"
    finally:
        sandbox.set_faults(hold_downloads_after=0)
    assert second["text"] != first["text"] and second["done"] > first["done"], (first, second)
    # While a bucket is still unlisted the total is a floor ("75+") and the bar has no value;
    # once every bucket is listed the bar only moves forward.
    for reading in (first, second):
        assert (reading["bar"] is None) == ("+ objects" in reading["text"]), reading
    if first["bar"] is not None:
        assert second["bar"] >= first["bar"], (first, second)

    page.get_by_test_id("run-state").filter(has_text="success").wait_for(timeout=RUN_TIMEOUT_MS)
    final = page.evaluate(READ_PROGRESS)
    assert final["done"] > second["done"] and final["bar"] == 100, final

    recorded = sandbox.history_row(run_id)
    assert recorded["status"] == "success"
    row = row_of(page, run_id)
    row.get_by_test_id("download").wait_for()
    assert row.get_attribute("data-status") == "success"
    assert row.get_by_test_id("status").inner_text() == "success"
    assert row.get_by_test_id("who").inner_text() == "operator"
    assert row.get_by_test_id("trigger").inner_text() == recorded["trigger"]
    assert row.get_by_test_id("duration").inner_text() not in ("", "–")
    assert row.get_by_test_id("size").inner_text() not in ("", "–")
    counts = row.get_by_test_id("counts").inner_text()
    assert f"{recorded['storage_objects']} objects" in counts
    assert f"{recorded['auth_users']} users" in counts
    link = row.get_by_test_id("run-link").get_attribute("href")
    assert link == f"{plugin_airflow.url}/dags/supabase_backup/runs/{quote(run_id, safe='')}"
    save_screenshot(page, "backups-page-success.png")

    with page.expect_download(timeout=60_000) as started:
        row.get_by_test_id("download").click()
    archive = tmp_path / "downloaded.zip"
    started.value.save_as(archive)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == recorded["sha256"]
    assert archive.stat().st_size == recorded["size_bytes"]

    # The row's link leads to the run in the Airflow UI.
    row.get_by_test_id("run-link").click()
    page.wait_for_url(f"**/dags/supabase_backup/runs/**")
    page.get_by_text(run_id).first.wait_for(timeout=60_000)
    assert errors == []
    page.context.close()


def test_a_backup_triggered_while_storage_is_down_shows_its_reason(
        browser, plugin_airflow, small_sandbox):
    sandbox = small_sandbox
    page, errors = open_page(browser, plugin_airflow, "operator")
    sandbox.set_faults(storage_down=True)
    try:
        page.get_by_test_id("back-up-now").click()
        page.get_by_test_id("run-state").filter(has_text="failed").wait_for(timeout=RUN_TIMEOUT_MS)
    finally:
        sandbox.set_faults(storage_down=False)
    run_id = page.get_by_test_id("run-id").inner_text()
    recorded = sandbox.history_row(run_id)
    assert recorded["status"] == "failed" and recorded["error"]
    row = row_of(page, run_id)
    row.wait_for()
    assert row.get_by_test_id("status").inner_text() == "failed"
    assert row.get_by_test_id("download").count() == 0
    shown = row.get_by_test_id("row-error")
    # The whole reason, wrapped inside the page: nothing cut off, nothing beyond the right edge.
    assert " ".join(shown.inner_text().split()) == " ".join(recorded["error"].split())
    fits = shown.evaluate("e => e.scrollWidth <= e.clientWidth + 1 && e.scrollHeight <= e.clientHeight + 1")
    assert fits
    assert shown.evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap"
    box = shown.bounding_box()
    assert box["x"] + box["width"] <= page.viewport_size["width"]
    save_screenshot(page, "backups-page-failed.png")
    assert errors == []
    page.context.close()


def test_an_incomplete_backup_shows_what_it_lacks(browser, plugin_airflow, small_sandbox):
    """An object whose blob is gone: the archive holds the rest, the row says incomplete and
    shows the unreadable count and the reason."""
    import sandbox as sandbox_package

    sandbox = small_sandbox
    bucket = "page-incomplete"
    sandbox_package.add_objects(sandbox.settings, bucket, [
        ("fine.txt", b"fine", "text/plain"), ("lost.bin", b"gone", "application/octet-stream")])
    try:
        with sandbox.connect() as connection:
            lost_id = connection.execute("SELECT id FROM storage.objects WHERE bucket_id = %s "
                                         "AND name = 'lost.bin'", (bucket,)).fetchone()[0]
        Path(sandbox.settings["blobs_dir"], str(lost_id)).unlink()
        page, errors = open_page(browser, plugin_airflow, "operator")
        page.get_by_test_id("back-up-now").click()
        page.get_by_test_id("run-state").filter(has_text="incomplete").wait_for(
            timeout=RUN_TIMEOUT_MS)
    finally:
        with sandbox.connect() as connection:
            connection.execute("DELETE FROM storage.objects WHERE bucket_id = %s", (bucket,))
            connection.execute("DELETE FROM storage.buckets WHERE id = %s", (bucket,))
    run_id = page.get_by_test_id("run-id").inner_text()
    recorded = sandbox.history_row(run_id)
    assert recorded["status"] == "incomplete" and recorded["objects_unreadable"] == 1
    row = row_of(page, run_id)
    row.wait_for()
    assert row.get_by_test_id("status").inner_text() == "incomplete"
    assert row.get_by_test_id("unreadable").inner_text() == "1 unreadable"
    assert f"{recorded['storage_objects']} objects" in row.get_by_test_id("counts").inner_text()
    shown = row.get_by_test_id("row-error")
    assert " ".join(shown.inner_text().split()) == " ".join(recorded["error"].split())
    assert f"{bucket}/lost.bin" in shown.inner_text()
    assert row.get_by_test_id("duration").inner_text() not in ("", "–")
    save_screenshot(page, "backups-page-incomplete.png")
    assert errors == []
    page.context.close()


@pytest.mark.parametrize("colour_mode", ["light", "dark"])
def test_the_page_follows_the_ui_colour_mode(browser, plugin_airflow, colour_mode):
    page, errors = open_page(browser, plugin_airflow, "operator", colour_mode=colour_mode)
    page.get_by_test_id("history-row").first.wait_for()
    assert page.evaluate("document.documentElement.classList.contains('dark')") == (
        colour_mode == "dark")
    background = background_brightness(page, "[data-testid=history] td")
    text = text_brightness(page, "[data-testid=history] td")
    if colour_mode == "dark":
        assert background < 0.25 and text > 0.6, (background, text)
    else:
        assert background > 0.75 and text < 0.4, (background, text)
    # Badges: each status its own colour.
    colours = page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('[data-testid=history-row]')].map(row => [
          row.dataset.status,
          getComputedStyle(row.querySelector('[data-testid=status]')).backgroundColor]))""")
    if "success" in colours and "failed" in colours:
        assert colours["success"] != colours["failed"]
    save_screenshot(page, f"backups-page-{colour_mode}.png")
    assert errors == []
    page.context.close()


def test_the_page_is_a_tab_on_the_dags_page(browser, plugin_airflow):
    page, errors = open_page(browser, plugin_airflow, "viewer",
                             "/dags/supabase_backup/plugin/supabase-backups")
    assert errors == []
    page.context.close()


def test_a_backup_a_drill_found_damaged_shows_it_and_warns_on_its_download(
        browser, plugin_airflow, small_sandbox):
    import uuid

    run_id = f"page-damaged__{uuid.uuid4().hex[:8]}"
    drill_run = f"supabase_backup_restore_drill:manual__{run_id}"
    finding = ("verify_backup: Archive verification failed for s3://b/k.zip: damaged member: "
               "Bad CRC-32 for file 'db/backup.sql'")
    with small_sandbox.connect() as connection:
        connection.execute(
            "INSERT INTO public.backup_history (run_id, status, trigger, started_at, finished_at, "
            "s3_bucket, s3_key, size_bytes, sha256, damaged_at, damaged_by, damage) VALUES "
            "(%s, 'success', 'manual', now(), now(), 'b', 'k.zip', 9, %s, "
            "'2026-12-07 23:40:00+00', %s, %s)", (run_id, "0" * 64, drill_run, finding))
    try:
        page, errors = open_page(browser, plugin_airflow, "operator")
        row = row_of(page, run_id)
        row.wait_for()
        assert row.get_by_test_id("damaged").inner_text() == "damaged (drill 2026-12-07)"
        assert row.get_by_test_id("status").inner_text() == "success"
        assert " ".join(row.get_by_test_id("damage").inner_text().split()) == finding
        download = row.get_by_test_id("download")
        assert download.inner_text() == "Download (damaged)"
        assert "found this archive damaged" in download.get_attribute("title")
        assert errors == []
        page.context.close()
    finally:
        with small_sandbox.connect() as connection:
            connection.execute("DELETE FROM public.backup_history WHERE run_id = %s", (run_id,))
