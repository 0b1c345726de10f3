"""The dashboard in a real headless Chromium: the list with counts, filters, search
and paging; a workflow's timeline, payloads and errors; a signal sent through the page
that a running worker acts on, seen without a reload; and a write refused without the
token."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from dashboard_workflows import HOSTILE

try:
    from playwright.sync_api import expect
except ImportError as missing:  # pragma: no cover - the test extra installs it
    if os.environ.get("CI") == "true":
        raise
    pytest.skip(
        f"SKIPPING DASHBOARD BROWSER TESTS: playwright is not installed ({missing}): "
        "pip install -e '.[test]'",
        allow_module_level=True,
    )

from conftest import QUICK, Scenario, Server, http, save_screenshot

#: How long the browser waits for something to appear, in milliseconds.
WAIT_MS = 15_000


def _api(server: Server, path: str) -> Any:
    reply = http(server, path)
    assert reply.status == 200, reply.body
    return reply.json()


def test_list_shows_counts_filters_and_pages(
    page: Any, dashboard: Server, scenario: Scenario, tmp_path: Path
) -> None:
    page.goto(dashboard.url)
    expected = scenario.expected_counts()
    stored = _api(dashboard, "/api/counts")
    for status, total in stored.items():
        expect(page.locator(f'[data-count="{status}"]')).to_have_text(str(total))
    # Every workflow this module recorded is counted (others may run meanwhile).
    for status, total in expected.items():
        assert stored[status] >= total
    assert page.locator('[data-count="TOTAL"]').inner_text() == str(sum(stored.values()))
    rows = page.locator("tbody tr[data-workflow-id]")
    assert rows.count() == sum(stored.values())
    # Stored HTML in a listed workflow's detail is text, never markup.
    assert page.title().startswith("Workflows")
    save_screenshot(page, tmp_path, "dashboard-list.png")

    failed_status = str(scenario.statuses["order-doomed"])
    page.locator(f'input[name="status"][value="{failed_status}"]').check()
    page.locator("#apply-filters").click()
    expect(page.locator("tbody tr[data-workflow-id]")).to_have_count(1)
    assert (
        page.locator("tbody tr[data-workflow-id]").get_attribute("data-workflow-id")
        == "order-doomed"
    )
    assert f"status={failed_status}" in page.url

    page.goto(dashboard.url + "?name=quick&limit=5")
    first = page.locator("tbody tr[data-workflow-id]")
    expect(first).to_have_count(5)
    newest = [first.nth(index).get_attribute("data-workflow-id") for index in range(5)]
    assert newest == [f"quick-{number:02d}" for number in range(QUICK - 1, QUICK - 6, -1)]
    page.locator("#next-page").click()
    expect(page.locator("tbody tr[data-workflow-id]")).to_have_count(QUICK - 5)
    assert page.locator("#next-page").count() == 0
    expect(page.locator("#range")).to_contain_text("6\u20137")


def test_search_opens_a_workflow_or_says_it_is_unknown(page: Any, dashboard: Server) -> None:
    page.goto(dashboard.url)
    page.locator('input[name="id"]').fill("order-shipped")
    page.locator('input[name="id"]').press("Enter")
    expect(page.locator("h1 .wid")).to_have_text("order-shipped")
    page.locator('input[name="id"]').fill("no-such-order")
    page.locator('input[name="id"]').press("Enter")
    expect(page.locator("#not-found")).to_contain_text("no-such-order")


def test_workflow_page_shows_timeline_payloads_and_no_markup(
    page: Any, dashboard: Server, tmp_path: Path
) -> None:
    page.goto(dashboard.url + "workflows/order-shipped")
    expect(page.locator("#status")).to_have_attribute("data-status", "COMPLETED")
    rows = page.locator("#gantt li.row")
    kinds = [rows.nth(index).get_attribute("data-kind") for index in range(rows.count())]
    assert kinds == ["step", "step", "sleep", "signal", "step"]
    charge = page.locator('#gantt li.row[data-seq="1"]')
    assert "2 attempts" in charge.inner_text()
    assert charge.locator(".mark").count() == 1  # the failed first attempt
    charge.locator("summary").click()
    expect(charge.locator(".op-detail")).to_contain_text("Attempt 1 failed: TimeoutError")
    expect(charge.locator(".traceback")).to_contain_text("in flaky_charge")
    # The bars are placed (the script sets their geometry from data attributes).
    width = page.locator('#gantt li.row[data-seq="2"] .bar').evaluate(
        "element => element.getBoundingClientRect().width"
    )
    assert width > 0
    signal = page.locator('#gantt li.row[data-seq="3"]')
    signal.locator("summary").click()
    expect(signal.locator("pre.payload").first).to_contain_text('"ann"')
    # Payloads with HTML are shown as text: no injected element, no script ran.
    expect(page.locator("#input")).to_contain_text(HOSTILE.replace('"', '\\"'))
    assert page.locator("main b").count() == 0
    assert page.locator("main script").count() == 0
    assert page.title() != "pwned"
    save_screenshot(page, tmp_path, "dashboard-workflow.png")


def test_failed_workflow_shows_error_traceback_and_compensation(
    page: Any, dashboard: Server, scenario: Scenario
) -> None:
    page.goto(dashboard.url + "workflows/order-doomed")
    expect(page.locator("#status")).to_have_attribute(
        "data-status", str(scenario.statuses["order-doomed"])
    )
    expect(page.locator("#workflow-error")).to_contain_text("PaymentDeclinedError")
    expect(page.locator("#workflow-error .error-message")).to_contain_text("card declined")
    expect(page.locator("#workflow-error .traceback")).to_contain_text("in decline")
    kinds = page.locator("#gantt li.row").evaluate_all(
        "rows => rows.map(row => row.dataset.kind + ':' + row.dataset.state)"
    )
    assert kinds[:2] == ["step:completed", "step:failed"]
    assert "compensation:completed" in kinds[2:]


def test_signal_sent_through_the_page_changes_the_status_live(
    page: Any, dashboard: Server, scenario: Scenario
) -> None:
    scenario.start_waiting("order-to-approve")
    page.goto(dashboard.url + "workflows/order-to-approve")
    expect(page.locator("#status")).to_have_attribute("data-status", "SUSPENDED")
    expect(page.locator('form[data-action="resume"]')).to_be_hidden()
    page.evaluate("window.__notReloaded = true")
    page.locator("#token").fill(dashboard.token)
    form = page.locator('form[data-action="signal"]')
    form.locator('input[name="name"]').fill("approved")
    form.locator('input[name="payload"]').fill('"dana"')
    form.locator("button").click()
    expect(page.locator("#flash")).to_have_text("signal 'approved' sent")
    # The worker resumes it; the page polls and shows it, without a reload.
    expect(page.locator("#status")).to_have_attribute("data-status", "COMPLETED", timeout=WAIT_MS)
    expect(page.locator("#result")).to_contain_text("approved by dana")
    # The actions follow the status: a finished workflow can only be forked.
    for action in ("signal", "cancel", "resume"):
        expect(page.locator(f'form[data-action="{action}"]')).to_be_hidden()
    expect(page.locator('form[data-action="retry"]')).to_be_visible()
    assert page.evaluate("window.__notReloaded") is True
    scenario.statuses["order-to-approve"] = scenario.statuses["order-shipped"]


def test_action_without_the_token_is_refused(
    page: Any, dashboard: Server, scenario: Scenario
) -> None:
    page.goto(dashboard.url + "workflows/order-waiting")
    expect(page.locator("#status")).to_have_attribute("data-status", "SUSPENDED")
    form = page.locator('form[data-action="signal"]')
    form.locator('input[name="name"]').fill("approved")
    form.locator("button").click()
    expect(page.locator("#flash")).to_contain_text("403")
    expect(page.locator("#flash")).to_contain_text("needs the dashboard token")
    page.locator("#token").fill("not-the-token")
    page.locator('form[data-action="cancel"] button').click()
    expect(page.locator("#flash")).to_contain_text("403")
    detail = _api(dashboard, "/api/workflows/order-waiting")
    assert detail["signals"] == []
    assert detail["workflow"]["status"] == "SUSPENDED"
    assert detail["workflow"]["cancel_requested"] is False


def test_list_updates_live_when_a_workflow_starts(
    page: Any, dashboard: Server, scenario: Scenario
) -> None:
    page.goto(dashboard.url)
    suspended = page.locator('[data-count="SUSPENDED"]')
    before = int(suspended.inner_text())
    page.evaluate("window.__notReloaded = true")
    scenario.start_waiting("order-seen-live")
    expect(page.locator('tr[data-workflow-id="order-seen-live"]')).to_have_count(1)
    expect(suspended).to_have_text(str(before + 1))
    assert page.evaluate("window.__notReloaded") is True
