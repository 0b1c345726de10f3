"""The dashboard over HTTP, without a browser: the token rule, default binding, the
JSON API (the CLI's documents), escaping, clear errors, the actions cancel, resume
and retry, and the list's speed over 100,000 stored workflows."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dashboard_workflows import HOSTILE, build_app

from conftest import (
    TOKEN,
    Scenario,
    Server,
    http,
    start_dashboard,
    stop_dashboard,
    until,
)
from durably.errors import WorkflowFailedError
from durably.models import WorkflowStatus

#: A token that is not the dashboard's.
WRONG_TOKEN = "wrong"  # noqa: S105 (a test value)
#: A token set by the operator.
OPERATOR_TOKEN = "from-the-operator"  # noqa: S105 (a test value)


def _post(server: Server, path: str, fields: dict[str, object], token: str | None = TOKEN):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Durably-Token"] = token
    return http(server, path, method="POST", data=json.dumps(fields).encode(), headers=headers)


def test_binds_to_loopback_and_prints_a_random_token_unless_given(scenario: Scenario) -> None:
    first = start_dashboard(scenario.url, env={"DURABLY_DASHBOARD_TOKEN": ""})
    try:
        assert first.url.startswith("http://127.0.0.1:")
        assert len(first.token) >= 24
        # The printed token is the one the writes need.
        refused = _post(first, "/api/workflows/order-waiting/cancel", {}, token=WRONG_TOKEN)
        assert refused.status == 403
        accepted = _post(
            first, "/api/workflows/order-waiting/signal", {"name": ""}, token=first.token
        )
        assert accepted.status == 409, accepted.body  # past the token check: an empty name
    finally:
        stop_dashboard(first)
    second = start_dashboard(scenario.url, env={"DURABLY_DASHBOARD_TOKEN": OPERATOR_TOKEN})
    try:
        assert second.token == OPERATOR_TOKEN
    finally:
        stop_dashboard(second)


def test_writes_without_the_right_token_are_refused(dashboard: Server) -> None:
    path = "/api/workflows/order-waiting/signal"
    assert _post(dashboard, path, {"name": "approved"}, token=None).status == 403
    assert _post(dashboard, path, {"name": "approved"}, token=WRONG_TOKEN).status == 403
    form = http(
        dashboard,
        path,
        method="POST",
        data=b"name=approved&token=wrong",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status == 403
    assert "needs the dashboard token" in form.json()["error"]
    # Reads need none, and nothing was written.
    detail = http(dashboard, "/api/workflows/order-waiting")
    assert detail.status == 200
    assert detail.json()["signals"] == []
    # A form with the right token in its field is accepted.
    accepted = http(
        dashboard,
        "/api/workflows/order-waiting/signal",
        method="POST",
        data=f"name=nudge&payload=1&token={TOKEN}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert accepted.status == 200, accepted.body
    signals = http(dashboard, "/api/workflows/order-waiting").json()["signals"]
    assert [(signal["name"], signal["payload"]) for signal in signals] == [("nudge", 1)]


def test_pages_escape_stored_payloads(dashboard: Server) -> None:
    for path in ("/workflows/order-shipped", "/?name=quick", "/workflows/order-shipped/live"):
        reply = http(dashboard, path)
        assert reply.status == 200
        assert HOSTILE not in reply.body
        assert "<b>bold?</b>" not in reply.body
        assert "script-src 'self'" in reply.headers["content-security-policy"]
    page = http(dashboard, "/workflows/order-shipped").body
    assert "&lt;script&gt;" in page


def test_api_serves_the_cli_documents(dashboard: Server, scenario: Scenario) -> None:
    api = http(dashboard, "/api/workflows/order-shipped").json()
    shown = subprocess.run(
        [sys.executable, "-m", "durably", "show", "order-shipped", "--db", scenario.url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert api == json.loads(shown.stdout)
    page = http(dashboard, "/api/workflows?status=COMPLETED&name=quick&limit=3").json()
    assert [row["workflow_id"] for row in page["workflows"]] == ["quick-06", "quick-05", "quick-04"]
    assert page["next_offset"] == 3
    both = http(dashboard, "/api/workflows?name=shipment,doomed-order").json()["workflows"]
    assert {"order-shipped", "order-doomed"} <= {row["workflow_id"] for row in both}
    assert {row["workflow_name"] for row in both} == {"shipment", "doomed-order"}
    counts = http(dashboard, "/api/counts").json()
    assert counts["COMPLETED"] >= 8


def test_bad_requests_say_what_to_do(dashboard: Server) -> None:
    bad_status = http(dashboard, "/?status=DONE")
    assert bad_status.status == 400
    assert "unknown status &#39;DONE&#39;" in bad_status.body and "COMPLETED" in bad_status.body
    assert http(dashboard, "/api/workflows?limit=0").status == 400
    missing = http(dashboard, "/workflows/no-such-workflow")
    assert missing.status == 404 and "no workflow with id" in missing.body
    bad_payload = _post(
        dashboard, "/api/workflows/order-waiting/signal", {"name": "x", "payload": "{oops"}
    )
    assert bad_payload.status == 409 and "must be JSON" in bad_payload.json()["error"]
    bad_step = _post(dashboard, "/api/workflows/order-shipped/retry", {"from_step": "x"})
    assert bad_step.status == 409 and "must be a number" in bad_step.json()["error"]
    not_json = http(
        dashboard,
        "/api/workflows/order-waiting/cancel",
        method="POST",
        data=b"{",
        headers={"Content-Type": "application/json", "X-Durably-Token": TOKEN},
    )
    assert not_json.status == 400


def test_cancel_resume_and_retry_through_the_api(dashboard: Server, scenario: Scenario) -> None:
    scenario.start_waiting("order-to-cancel")
    cancelled = _post(dashboard, "/api/workflows/order-to-cancel/cancel", {})
    assert cancelled.status == 200, cancelled.body
    scenario.worker.run(until(scenario.worker.app, "order-to-cancel", WorkflowStatus.CANCELLED, ""))
    refused = _post(dashboard, "/api/workflows/order-to-cancel/resume", {})
    assert refused.status == 409
    assert "only a PARKED, FAILED or COMPENSATION_FAILED" in refused.json()["error"]

    fork = _post(dashboard, "/api/workflows/order-shipped/retry", {"from_step": 3})
    assert fork.status == 200, fork.body
    document = fork.json()
    fork_id = document["workflow"]["workflow_id"]
    assert document["replayed_operations"] == 3
    assert document["url"] == f"/workflows/{fork_id}"
    # The worker runs the fork: it consumes the resent signal and completes.
    result = scenario.worker.run(scenario.worker.app.handle(fork_id).result())
    assert result == "shipped order-shipped, approved by ann"

    failed = _post(dashboard, "/api/workflows/order-failing/resume", {})
    assert failed.status == 200, failed.body
    assert failed.json()["workflow"]["status"] != "FAILED"


def _shown_actions(body: str) -> list[str]:
    """The action forms of a workflow's page that are not hidden."""
    forms = re.findall(r'<form class="action" data-action="(\w+)"( hidden)?>', body)
    assert forms, body
    return [action for action, hidden in forms if not hidden]


def test_a_workflow_page_shows_only_the_actions_that_apply(
    dashboard: Server, scenario: Scenario
) -> None:
    """Signal and cancel until a workflow finishes, resume for a parked or failed one,
    retry (a fork) for any; the live part says which, for the page's script."""
    scenario.start_waiting("order-acted-on")

    async def fail() -> None:
        app = scenario.worker.app
        handle = await app.start("failing-order", "x", workflow_id="order-fails-again")
        with pytest.raises(WorkflowFailedError):
            await handle.result()

    scenario.worker.run(fail())
    expected = {
        "order-acted-on": ["signal", "cancel", "retry"],  # SUSPENDED
        "order-fails-again": ["resume", "retry"],  # FAILED
        "order-shipped": ["retry"],  # COMPLETED
        "order-doomed": ["retry"],  # COMPENSATED
    }
    for workflow_id, actions in expected.items():
        page = http(dashboard, f"/workflows/{workflow_id}")
        assert _shown_actions(page.body) == actions, workflow_id
        live = http(dashboard, f"/workflows/{workflow_id}/live").body
        assert f'data-actions="{" ".join(actions)}"' in live, workflow_id


def test_list_stays_fast_with_100000_workflows(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    url = f"sqlite:///{path}"

    async def one() -> None:
        async with build_app(url, poll_interval=0.05) as app:
            await (await app.start("quick", 0, "seed", workflow_id="seed")).result()

    asyncio.run(one())
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(workflows)")]
        chosen = {
            "workflow_id": "'bulk-' || printf('%06d', n)",
            "created_at": "created_at + n",
            "status": "CASE WHEN n % 100 = 0 THEN 'FAILED' ELSE 'COMPLETED' END",
        }
        selected = ", ".join(chosen.get(column, column) for column in columns)
        connection.execute(
            f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < "  # noqa: S608
            f"100000) INSERT INTO workflows ({', '.join(columns)}) SELECT {selected} "
            f"FROM workflows, seq WHERE workflow_id = 'seed'"
        )
    server = start_dashboard(url, "--token", TOKEN)
    try:
        timings = {}
        for path_ in ("/", "/?status=FAILED", "/?offset=99950", "/api/counts"):
            started = time.perf_counter()
            reply = http(server, path_)
            timings[path_] = time.perf_counter() - started
            assert reply.status == 200, reply.body
        counts = http(server, "/api/counts").json()
        assert counts == {"COMPLETED": 99_001, "FAILED": 1_000}
        first = http(server, "/api/workflows?limit=2").json()
        assert [row["workflow_id"] for row in first["workflows"]] == ["bulk-100000", "bulk-099999"]
        assert 'data-count="TOTAL">100001<' in http(server, "/").body
        # Generous bounds for a loaded 2-core CI machine; typical times are far lower.
        assert max(timings.values()) < 3.0, timings
    finally:
        stop_dashboard(server)
