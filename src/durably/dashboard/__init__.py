"""The durably web dashboard (``durably dashboard``, installed with ``durably[dashboard]``).

A Starlette app over the operator layer (:mod:`durably.admin`): a workflow list with
counts, filters, search by id and paging; a workflow page with the step timeline as a
Gantt chart, payloads and errors; the actions signal, cancel, resume and retry from a
step, which need the dashboard's token; live updates by polling. See
``docs/dashboard.md``.
"""

from __future__ import annotations

from durably.dashboard.app import TOKEN_HEADER, Dashboard, create_app, new_token
from durably.dashboard.gantt import Bar, Gantt, Mark, build_gantt

__all__ = [
    "TOKEN_HEADER",
    "Dashboard",
    "create_app",
    "new_token",
    "Bar",
    "Gantt",
    "Mark",
    "build_gantt",
]
