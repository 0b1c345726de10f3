"""A desktop application's progress window, which reads its state from a file."""

from __future__ import annotations

from fake_services.base import FakeService, Json


class ProgressWindow(FakeService):
    """What the user sees: the batches done and a percentage."""

    name = "progress"

    def initial_state(self) -> Json:
        return {"batches_done": [], "percent": 0}

    def batch_done(self, batch: int, batches: int, rows: int, *, idempotency_key: str) -> None:
        """Show that ``batch`` (0-based) of ``batches`` is done."""

        def apply(state: Json) -> tuple[Json, str]:
            state["batches_done"].append(batch)
            state["percent"] = round(100 * len(state["batches_done"]) / batches)
            bar = "#" * (state["percent"] // 10)
            return {}, f"[{bar:<10}] batch {batch + 1}/{batches}: {rows} rows ({state['percent']}%)"

        self.request("batch_done", idempotency_key, apply)
