"""Running a durably app inside something else: a web framework, a plain process.

- :mod:`durably.integrations.asgi`: ``lifespan(app)`` for Starlette, FastAPI and any
  framework that takes a lifespan context manager: the app opens (and recovers
  unfinished work) at startup and drains at shutdown.
- :mod:`durably.integrations.process`: ``serve(app)`` runs an app as a long-lived
  process that stops gracefully on SIGTERM or Ctrl-C (also ``durably.serve``).

None of them needs a third-party package.
"""

from __future__ import annotations
