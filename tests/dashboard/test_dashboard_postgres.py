"""The dashboard over HTTP on PostgreSQL: the real ``durably dashboard`` command on a
schema filled by real workflows serves the list with its counts and a workflow's page,
and takes an action with the token and refuses one without it.

The schema comes from the root conftest's ``postgres_schema`` fixture: without a
server these tests skip loudly, and under CI=true they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator

import pytest
from dashboard_workflows import HOSTILE, build_app

import durably
from conftest import TOKEN, Reply, Server, http, start_dashboard, stop_dashboard, until
from durably.models import WorkflowStatus

#: What the recorded schema holds, by status.
RECORDED = {"COMPLETED": 3, "FAILED": 1, "SUSPENDED": 1}


def _schema_url(schema: str) -> str:
    server = os.environ.get(
        "DURABLY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    return f"{server}{'&' if '?' in server else '?'}schema={schema}"


async def _record(url: str) -> None:
    """Three completed workflows, a failed one, and a shipment waiting for its signal."""
    async with build_app(url, inline_wait=0, poll_interval=0.05) as app, asyncio.timeout(60):
        for number in range(RECORDED["COMPLETED"]):
            handle = await app.start("quick", number, HOSTILE, workflow_id=f"pg-quick-{number}")
            await handle.result()
        failing = await app.start("failing-order", "pg-failing", workflow_id="pg-failing")
        with pytest.raises(durably.WorkflowFailedError):
            await failing.result()
        await app.start("shipment", "pg-waiting", HOSTILE, workflow_id="pg-waiting")
        await until(app, "pg-waiting", WorkflowStatus.SUSPENDED, "approved")


@pytest.fixture
def postgres_dashboard(postgres_schema: str) -> Iterator[Server]:
    """``durably dashboard`` on a PostgreSQL schema of recorded workflows (no worker)."""
    url = _schema_url(postgres_schema)
    asyncio.run(_record(url))
    server = start_dashboard(url, "--token", TOKEN)
    try:
        yield server
    finally:
        stop_dashboard(server)


def _post(server: Server, path: str, fields: dict[str, object], token: str | None) -> Reply:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Durably-Token"] = token
    return http(server, path, method="POST", data=json.dumps(fields).encode(), headers=headers)


def test_the_list_and_a_workflow_page_are_served_from_postgres(
    postgres_dashboard: Server,
) -> None:
    listing = http(postgres_dashboard, "/")
    assert listing.status == 200, listing.body
    for status, total in RECORDED.items():
        assert f'data-count="{status}">{total}<' in listing.body, status
    assert f'data-count="TOTAL">{sum(RECORDED.values())}<' in listing.body
    assert 'data-workflow-id="pg-waiting"' in listing.body
    assert http(postgres_dashboard, "/api/counts").json() == RECORDED

    page = http(postgres_dashboard, "/workflows/pg-waiting")
    assert page.status == 200, page.body
    assert 'data-status="SUSPENDED"' in page.body
    kinds = re.findall(r'<li class="row" data-seq="\d+" data-kind="(\w+)"', page.body)
    assert kinds == ["step", "step", "sleep"]  # reserve, charge, cool-off; then it waits
    assert HOSTILE not in page.body


def test_an_action_on_postgres_needs_the_token(postgres_dashboard: Server) -> None:
    path = "/api/workflows/pg-waiting/signal"
    refused = _post(postgres_dashboard, path, {"name": "approved", "payload": '"x"'}, token=None)
    assert refused.status == 403
    sent = _post(postgres_dashboard, path, {"name": "approved", "payload": '"ann"'}, token=TOKEN)
    assert sent.status == 200, sent.body
    assert sent.json()["message"] == "signal 'approved' sent"
    detail = http(postgres_dashboard, "/api/workflows/pg-waiting").json()
    assert [(signal["name"], signal["payload"]) for signal in detail["signals"]] == [
        ("approved", "ann")
    ]
