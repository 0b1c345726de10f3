"""A desktop application's progress window, which reads its state from a file."""

from __future__ import annotations

from fake_services.base import FakeService, Json


class ProgressWindow(FakeService):
    """What the user sees: per migration (the database it migrates), the batches done
    and a percentage."""

    name = "progress"

    def initial_state(self) -> Json:
        return {"migrations": {}}

    def batch_done(
        self, migration: str, batch: int, batches: int, rows: int, *, idempotency_key: str
    ) -> None:
        """Show that ``batch`` (0-based) of ``batches`` of ``migration`` is done."""

        def apply(state: Json) -> tuple[Json, str]:
            shown = state["migrations"].setdefault(migration, {"batches_done": [], "percent": 0})
            shown["batches_done"].append(batch)
            shown["percent"] = round(100 * len(shown["batches_done"]) / batches)
            bar = "#" * (shown["percent"] // 10)
            return {}, f"[{bar:<10}] batch {batch + 1}/{batches}: {rows} rows ({shown['percent']}%)"

        self.request("batch_done", idempotency_key, apply)
