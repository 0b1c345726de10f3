"""The dashboard's web application: pages, a small JSON API and the operator actions.

Reads need no token; every action that changes the store is a POST that must carry
the dashboard's token (header ``X-Durably-Token`` or form field ``token``) and is
refused with 403 otherwise. Pages are rendered by Jinja2 with autoescaping: stored
payloads, names and errors are always shown as text, never as HTML.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from durably import admin
from durably.admin.documents import (
    detail_document,
    fork_document,
    moment,
    page_document,
    signal_document,
    workflow_document,
)
from durably.clock import SystemClock
from durably.dashboard.gantt import build_gantt
from durably.errors import DurablyError, WorkflowNotFoundError
from durably.models import WorkflowStatus
from durably.store import Store

#: The request header that carries the token of a write.
TOKEN_HEADER = "X-Durably-Token"  # noqa: S105 (a header name, not a secret)
#: The largest page of the workflow list.
MAX_PAGE_SIZE = 500
#: The page size when none is asked for.
DEFAULT_PAGE_SIZE = 50
#: How often the pages poll for changes, in milliseconds.
POLL_MILLISECONDS = 1000

_PACKAGE = Path(str(resources.files("durably.dashboard")))


def new_token() -> str:
    """A random token for the dashboard's writes."""
    return secrets.token_urlsafe(24)


def _pretty(value: object) -> str:
    """A JSON value as indented text (shown escaped, in a ``<pre>``)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(str(_PACKAGE / "templates")),
        autoescape=select_autoescape(enabled_extensions=("html",), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["pretty"] = _pretty
    environment.filters["moment"] = moment
    environment.globals["statuses"] = [str(status) for status in WorkflowStatus]
    environment.globals["poll_ms"] = POLL_MILLISECONDS
    return environment


def _field_text(key: object, value: object) -> str:
    """A JSON request field as the text a form would send (a JSON ``payload`` that is
    not a string is sent on as JSON text)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if key == "payload":
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _BadRequest(ValueError):
    """A request parameter is malformed; the message says which and what is accepted."""


def _statuses(request: Request) -> list[WorkflowStatus] | None:
    chosen: list[WorkflowStatus] = []
    for raw in request.query_params.getlist("status"):
        for part in raw.split(","):
            if not part.strip():
                continue
            try:
                chosen.append(WorkflowStatus(part.strip().upper()))
            except ValueError:
                raise _BadRequest(
                    f"unknown status {part!r}; use one of "
                    f"{', '.join(str(status) for status in WorkflowStatus)}"
                ) from None
    return chosen or None


def _names(request: Request) -> list[str]:
    """The ``name`` filters: repeated, or separated by commas."""
    return [
        part.strip()
        for raw in request.query_params.getlist("name")
        for part in raw.split(",")
        if part.strip()
    ]


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, "")
    if not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise _BadRequest(f"{name} must be between {low} and {high}, not {value}")
    return value


class Dashboard:
    """The dashboard over one store: build it, then serve :attr:`app` with an ASGI
    server (``durably dashboard`` uses uvicorn)."""

    def __init__(self, store: Store, *, token: str, now: Callable[[], int] | None = None) -> None:
        """Serve ``store`` (opened at start-up, closed at shut-down); writes need
        ``token``.

        Raises:
            ValueError: an empty token.
        """
        if not token:
            raise ValueError("the dashboard token must not be empty")
        self.store = store
        self.token = token
        self._now = now or SystemClock().now
        self._templates = _environment()
        self.app = Starlette(
            routes=[
                Route("/", self.list_page, methods=["GET"]),
                Route("/workflows/{workflow_id:path}/live", self.live_fragment, methods=["GET"]),
                Route("/workflows/{workflow_id:path}", self.workflow_page, methods=["GET"]),
                Route("/api/workflows", self.api_list, methods=["GET"]),
                Route("/api/counts", self.api_counts, methods=["GET"]),
                Route(
                    "/api/workflows/{workflow_id:path}/signal", self.act_signal, methods=["POST"]
                ),
                Route(
                    "/api/workflows/{workflow_id:path}/cancel", self.act_cancel, methods=["POST"]
                ),
                Route(
                    "/api/workflows/{workflow_id:path}/resume", self.act_resume, methods=["POST"]
                ),
                Route("/api/workflows/{workflow_id:path}/retry", self.act_retry, methods=["POST"]),
                Route("/api/workflows/{workflow_id:path}", self.api_detail, methods=["GET"]),
                Mount("/static", StaticFiles(directory=str(_PACKAGE / "static")), name="static"),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.store.open()
        try:
            yield
        finally:
            await self.store.close()

    # -- rendering ---------------------------------------------------------------

    def _render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        template = self._templates.get_template(name)
        response = HTMLResponse(template.render(**context), status_code=status_code)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def _list_context(self, request: Request) -> dict[str, Any]:
        statuses = _statuses(request)
        names = _names(request)
        limit = _int_param(request, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        offset = _int_param(request, "offset", 0, 0, 10**12)
        page = await admin.list_workflows(
            self.store, statuses=statuses, names=names or None, limit=limit, offset=offset
        )
        counts = {
            str(status): total for status, total in (await self.store.count_workflows()).items()
        }
        chosen = [str(status) for status in statuses or ()]

        def page_url(new_offset: int) -> str:
            query: list[tuple[str, str]] = [("status", status) for status in chosen]
            query += [("name", name) for name in names]
            if limit != DEFAULT_PAGE_SIZE:
                query.append(("limit", str(limit)))
            if new_offset:
                query.append(("offset", str(new_offset)))
            return "/?" + urlencode(query) if query else "/"

        return {
            "page": page,
            "counts": counts,
            "total": sum(counts.values()),
            "chosen": chosen,
            "names": names,
            "next_url": None if page.next_offset is None else page_url(page.next_offset),
            "previous_url": None if offset == 0 else page_url(max(offset - limit, 0)),
            "status_url": lambda status: "/?" + urlencode([("status", status)]),
            "first": offset + 1 if page.workflows else offset,
            "last": offset + len(page.workflows),
        }

    async def list_page(self, request: Request) -> Response:
        """The workflow list: counts by status, filters, search by id, paging."""
        search = request.query_params.get("id", "").strip()
        if search:
            record = await self.store.get_workflow(search)
            if record is not None:
                return RedirectResponse(f"/workflows/{record.workflow_id}", status_code=303)
        try:
            context = await self._list_context(request)
        except (_BadRequest, ValueError) as error:
            return self._render("error.html", 400, title="Bad request", message=str(error))
        if request.query_params.get("fragment") == "1":
            return self._render("_list_body.html", **context)
        return self._render("list.html", search=search, not_found=bool(search), **context)

    async def _detail_context(self, workflow_id: str) -> dict[str, Any]:
        detail = await admin.describe_workflow(self.store, workflow_id)
        now = self._now()
        return {
            "detail": detail,
            "doc": detail_document(detail),
            "gantt": build_gantt(detail.workflow, detail.timeline, now),
            "actions": admin.allowed_actions(detail.workflow.status),
            "last_seq": max((entry.seq for entry in detail.timeline), default=-1),
        }

    async def workflow_page(self, request: Request) -> Response:
        """One workflow: its record, step timeline, payloads, errors and actions."""
        workflow_id = request.path_params["workflow_id"]
        try:
            context = await self._detail_context(workflow_id)
        except WorkflowNotFoundError as error:
            return self._render("error.html", 404, title="Not found", message=str(error))
        return self._render("workflow.html", **context)

    async def live_fragment(self, request: Request) -> Response:
        """The changing part of a workflow's page, polled by the page's script."""
        try:
            context = await self._detail_context(request.path_params["workflow_id"])
        except WorkflowNotFoundError as error:
            return self._render("error.html", 404, title="Not found", message=str(error))
        return self._render("_workflow_body.html", **context)

    # -- JSON API ------------------------------------------------------------------

    async def api_list(self, request: Request) -> Response:
        """A page of workflows as ``durably list --json`` prints it."""
        try:
            statuses = _statuses(request)
            limit = _int_param(request, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
            offset = _int_param(request, "offset", 0, 0, 10**12)
        except _BadRequest as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        names = _names(request)
        page = await admin.list_workflows(
            self.store, statuses=statuses, names=names or None, limit=limit, offset=offset
        )
        return JSONResponse(page_document(page))

    async def api_counts(self, request: Request) -> Response:
        """The number of workflows in each status."""
        counts = await self.store.count_workflows()
        return JSONResponse({str(status): total for status, total in sorted(counts.items())})

    async def api_detail(self, request: Request) -> Response:
        """A workflow as ``durably show --json`` prints it."""
        try:
            detail = await admin.describe_workflow(self.store, request.path_params["workflow_id"])
        except WorkflowNotFoundError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        return JSONResponse(detail_document(detail))

    # -- actions -------------------------------------------------------------------

    async def _fields(self, request: Request) -> dict[str, str]:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                raise _BadRequest("the request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise _BadRequest("the request body must be a JSON object")
            return {str(key): _field_text(key, value) for key, value in body.items()}
        if content_type.startswith("application/x-www-form-urlencoded"):
            body_text = (await request.body()).decode("utf-8", errors="replace")
            return {key: values[-1] for key, values in parse_qs(body_text).items()}
        if not (await request.body()).strip():
            return {}
        raise _BadRequest(
            "send the fields as JSON (Content-Type: application/json) or as a form "
            "(application/x-www-form-urlencoded)"
        )

    def _authorized(self, request: Request, fields: dict[str, str]) -> bool:
        given = request.headers.get(TOKEN_HEADER) or fields.get("token") or ""
        return secrets.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))

    async def _act(
        self,
        request: Request,
        action: Callable[[str, dict[str, str]], Any],
    ) -> Response:
        workflow_id = request.path_params["workflow_id"]
        try:
            fields = await self._fields(request)
        except _BadRequest as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        if not self._authorized(request, fields):
            return JSONResponse(
                {
                    "error": "refused: this action needs the dashboard token (printed by "
                    "`durably dashboard` at start-up, or set with --token / "
                    "DURABLY_DASHBOARD_TOKEN); enter it in the token field"
                },
                status_code=403,
            )
        try:
            document = await action(workflow_id, fields)
        except WorkflowNotFoundError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        except (DurablyError, ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=409)
        return JSONResponse(document)

    async def act_signal(self, request: Request) -> Response:
        """Send a signal (``name``, JSON ``payload``, optional ``dedup_key``)."""

        async def signal(workflow_id: str, fields: dict[str, str]) -> dict[str, Any]:
            raw = fields.get("payload", "")
            payload: object = None
            if raw.strip():
                try:
                    payload = json.loads(raw)
                except ValueError as error:
                    raise ValueError(
                        f"the payload must be JSON (a string is written in quotes): {error}"
                    ) from None
            record, appended = await admin.send_signal(
                self.store,
                workflow_id,
                fields.get("name", "").strip(),
                payload,
                dedup_key=fields.get("dedup_key", "").strip() or None,
                now=self._now(),
            )
            verb = "sent" if appended else "already sent (same dedup key)"
            return {
                "message": f"signal {record.name!r} {verb}",
                "appended": appended,
                "signal": signal_document(record),
            }

        return await self._act(request, signal)

    async def act_cancel(self, request: Request) -> Response:
        """Request a cancellation (``compensate`` runs the compensations)."""

        async def cancel(workflow_id: str, fields: dict[str, str]) -> dict[str, Any]:
            compensate = fields.get("compensate", "").lower() in {"1", "true", "on", "yes"}
            record = await admin.cancel_workflow(
                self.store, workflow_id, compensate=compensate, now=self._now()
            )
            return {
                "message": f"cancellation requested: {record.status}",
                "workflow": workflow_document(record),
            }

        return await self._act(request, cancel)

    async def act_resume(self, request: Request) -> Response:
        """Make a parked or failed workflow runnable again."""

        async def resume(workflow_id: str, fields: dict[str, str]) -> dict[str, Any]:
            record = await admin.resume_workflow(self.store, workflow_id, now=self._now())
            return {"message": f"resumed: {record.status}", "workflow": workflow_document(record)}

        return await self._act(request, resume)

    async def act_retry(self, request: Request) -> Response:
        """Fork the workflow from step ``from_step``."""

        async def retry(workflow_id: str, fields: dict[str, str]) -> dict[str, Any]:
            raw = fields.get("from_step", "").strip()
            try:
                from_seq = int(raw)
            except ValueError:
                raise ValueError(f"the step to retry from must be a number, not {raw!r}") from None
            fork = await admin.fork_workflow(
                self.store, workflow_id, from_seq=from_seq, now=self._now()
            )
            document = fork_document(fork)
            document["message"] = f"forked as {fork.fork.workflow_id} from step #{from_seq}"
            document["url"] = f"/workflows/{fork.fork.workflow_id}"
            return document

        return await self._act(request, retry)


def create_app(store: Store | str, *, token: str | None = None) -> Starlette:
    """The dashboard's ASGI app for ``store`` (a store, or an operator URL opened with
    :func:`~durably.admin.open_operator_store`); writes need ``token`` (default: a new
    random one, readable as ``app.state.token``)."""
    opened = admin.open_operator_store(store) if isinstance(store, str) else store
    dashboard = Dashboard(opened, token=token or new_token())
    dashboard.app.state.token = dashboard.token
    return dashboard.app
