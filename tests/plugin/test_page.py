"""The Backups page inside the real Airflow UI, in a headless Debian chromium (never a downloaded
browser): a viewer sees the history without controls; an operator backs up from the page and
watches the run end."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                                reason="Debian chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, services, user: str, path: str = "/plugin/backups"):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    # The UI's session is the _token cookie that its login form sets; the plugin reads it too.
    context.add_cookies([{"name": "_token", "value": services.token(user), "url": services.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{services.url}{path}")
    page.get_by_test_id("backups-page").wait_for(timeout=60_000)
    return page, errors


def test_a_viewer_sees_the_history_but_no_controls(browser, plugin_airflow):
    page, errors = open_page(browser, plugin_airflow, "viewer")
    page.get_by_text("Supabase backups").wait_for()
    page.get_by_test_id("history").wait_for()
    assert page.get_by_test_id("back-up-now").count() == 0
    assert page.get_by_role("button", name="Download").count() == 0
    page.get_by_test_id("enabled-switch").locator("input").is_disabled()
    assert errors == []
    page.context.close()


def test_an_operator_backs_up_from_the_page_and_watches_it_end(browser, plugin_airflow, tmp_path):
    page, errors = open_page(browser, plugin_airflow, "operator")
    page.get_by_test_id("back-up-now").click()
    page.get_by_test_id("run-progress").wait_for()
    page.get_by_test_id("run-state").filter(has_text="success").wait_for(timeout=600_000)
    page.get_by_test_id("history-row").first.get_by_role("button", name="Download").wait_for()
    page.screenshot(path=str(tmp_path / "backups-page.png"), full_page=True)
    assert errors == []
    page.context.close()


def test_the_page_is_a_tab_on_the_dags_page(browser, plugin_airflow):
    page, errors = open_page(browser, plugin_airflow, "viewer",
                             "/dags/supabase_backup/plugin/supabase-backups")
    page.get_by_test_id("history").wait_for()
    assert errors == []
    page.context.close()
