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
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo
from urllib.parse import quote

import pytest

from tests.conftest import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR", PROJECT_ROOT / ".artifacts" / "screenshots"))
COMMITTED = PROJECT_ROOT / "docs" / "screenshots"
# The ones the README shows; the others (light mode, incomplete) stay test artifacts.
SHOWN_IN_README = {"backups-page-success.png", "backups-page-failed.png", "backups-page-dark.png",
                   "backups-page-retrying.png", "backups-dag-tab.png"}
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
              colour_mode: str = "light", browser_timezone: str | None = None,
              airflow_timezone: str | None = None):
    context = browser.new_context(viewport={"width": 1400, "height": 900},
                                  color_scheme=colour_mode, accept_downloads=True,
                                  timezone_id=browser_timezone)
    # The UI follows the system colour mode unless one was chosen (next-themes' "theme" key).
    context.add_init_script(f"window.localStorage.setItem('theme', '{colour_mode}');")
    if airflow_timezone:
        # What Airflow's time-zone selector stores (usehooks-ts useLocalStorage: JSON).
        context.add_init_script(
            f"window.localStorage.setItem('timezone', JSON.stringify('{airflow_timezone}'));")
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
    # The page's own button, named as such (the row's column keeps "api").
    assert recorded["trigger"] == "api"
    assert row.get_by_test_id("trigger").inner_text() == "Backups page"
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


# Running animations inside the run's panel (the indeterminate bar's, a spinner's).
RUNNING_ANIMATIONS = """() => document.querySelector('[data-testid=run-progress]')
    .getAnimations({subtree: true}).filter(a => a.playState === 'running').length"""


def format_duration(seconds: float) -> str:
    """The page's formatDuration, for runs under an hour."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def test_an_outage_is_visible_while_it_happens(browser, plugin_airflow, small_sandbox):
    """Storage answers 503 throughout: the page shows the task waiting to retry, its attempt, the
    error it met and when it tries next; once Airflow ends the run the bar stands still and the
    row's Duration is the Airflow run's."""
    sandbox = small_sandbox
    page, errors = open_page(browser, plugin_airflow, "operator", airflow_timezone="UTC")
    sandbox.set_faults(storage_down=True)
    try:
        page.get_by_test_id("back-up-now").click()
        waiting = page.locator("[data-testid=retrying][data-state=up_for_retry]").filter(
            has=page.get_by_test_id("retry-error"))
        waiting.first.wait_for(timeout=RUN_TIMEOUT_MS)
        seen = page.evaluate("""() => {
            const notice = document.querySelector(
              '[data-testid=retrying][data-state=up_for_retry]');
            return {state: document.querySelector('[data-testid=run-state]').innerText,
                    attempt: notice.querySelector('[data-testid=retry-attempt]').innerText,
                    error: notice.querySelector('[data-testid=retry-error]').innerText,
                    next: notice.querySelector('[data-testid=next-try]').innerText};
        }""")
        save_screenshot(page, "backups-page-retrying.png")
        assert seen["state"] == "retrying", seen
        assert re.fullmatch(r"Retrying list_buckets: attempt [12] of 3 failed at "
                            r"\d\d:\d\d:\d\d UTC", seen["attempt"]), seen
        assert "503" in seen["error"], seen
        assert re.fullmatch(r"Next try at \d\d:\d\d:\d\d UTC\.", seen["next"]), seen
        page.get_by_test_id("run-state").filter(has_text="failed").wait_for(timeout=RUN_TIMEOUT_MS)
    finally:
        sandbox.set_faults(storage_down=False)
    run_id = page.get_by_test_id("run-id").inner_text()
    assert page.get_by_test_id("run-progress").get_attribute("data-active") == "false"
    assert page.get_by_test_id("retrying").count() == 0
    assert page.evaluate(RUNNING_ANIMATIONS) == 0
    bar = page.get_by_test_id("progress-bar")
    if bar.count():
        assert bar.get_attribute("data-value") != ""
    run = plugin_airflow.api("GET", f"/api/v2/dags/supabase_backup/dagRuns/{run_id}").json()
    assert run["state"] == "failed"
    took = (datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"]))
    row = row_of(page, run_id)
    row.wait_for()
    assert row.get_by_test_id("duration").inner_text() == format_duration(took.total_seconds())
    assert errors == []
    page.context.close()


def test_a_run_from_the_rest_client_in_airflows_time_zone(browser, plugin_airflow, plugin,
                                                          small_sandbox):
    """A run triggered with the official REST client (no conf key) reads "REST API"; the page,
    opened in a browser in New York with Airflow's selector on Tokyo, shows Tokyo time and says
    so; the sha256's copy button copies the row's whole sha256."""
    from airflow_client.client import ApiClient, Configuration
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody

    configuration = Configuration(host=plugin_airflow.url,
                                  access_token=plugin_airflow.token("operator"))
    with ApiClient(configuration) as api_client:
        run = DagRunApi(api_client).trigger_dag_run("supabase_backup", TriggerDAGRunPostBody(
            logical_date=None, conf={"include_storage": False}))
    assert plugin.wait_for_run(run.dag_run_id)[-1]["state"] == "success"
    recorded = small_sandbox.history_row(run.dag_run_id)

    page, errors = open_page(browser, plugin_airflow, "operator",
                             browser_timezone="America/New_York", airflow_timezone="Asia/Tokyo")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                   origin=plugin_airflow.url)
    row = row_of(page, run.dag_run_id)
    row.wait_for()
    assert row.get_by_test_id("trigger").inner_text() == "REST API"
    assert row.get_by_test_id("who").inner_text() == "operator"
    tokyo = datetime.fromisoformat(recorded["started_at"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert row.get_by_test_id("run-link").inner_text() == f"{tokyo:%Y-%m-%d %H:%M:%S} GMT+9"
    assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == "America/New_York"
    assert re.fullmatch(r"[\d.]+ (B|KiB|MiB|GiB)", row.get_by_test_id("size").inner_text())

    sha256 = row.get_by_test_id("sha256")
    assert sha256.get_attribute("title") == recorded["sha256"]
    row.get_by_test_id("copy-sha256").click()
    row.get_by_text("Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == recorded["sha256"]
    assert errors == []
    page.context.close()


# For each element: its lines (distinct tops of its characters' boxes) and the characters that
# end a line before the last one.
LINE_BREAKS = """(element) => {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  const tops = [];
  const endings = [];
  let previous = null;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const rect = range.getBoundingClientRect();
      if (rect.width === 0 && rect.height === 0) continue;
      if (previous && Math.abs(rect.top - previous.top) > rect.height / 2) {
        endings.push(previous.character);
      }
      if (!tops.some(top => Math.abs(top - rect.top) <= rect.height / 2)) tops.push(rect.top);
      previous = {top: rect.top, character: node.data[i]};
    }
  }
  return {lines: tops.length, endings};
}"""


def test_the_dag_tab_at_its_real_width(browser, plugin_airflow):
    """In the DAG's tab (narrower than the nav page) each Contents cell is one line and archive
    keys break only after / or -."""
    page, errors = open_page(browser, plugin_airflow, "viewer",
                             "/dags/supabase_backup/plugin/supabase-backups")
    page.get_by_test_id("history-row").first.wait_for()
    page.get_by_test_id("s3-key").first.wait_for()
    width = page.get_by_test_id("backups-page").bounding_box()["width"]
    assert width < page.viewport_size["width"] - 200, width
    for cell in page.get_by_test_id("counts").all():
        if cell.inner_text().strip() != "–":
            assert cell.evaluate(LINE_BREAKS)["lines"] == 1, cell.inner_text()
    for key in page.get_by_test_id("s3-key").all():
        breaks = key.evaluate(LINE_BREAKS)
        assert set(breaks["endings"]) <= {"/", "-"}, (key.inner_text(), breaks)
    save_screenshot(page, "backups-dag-tab.png")
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
