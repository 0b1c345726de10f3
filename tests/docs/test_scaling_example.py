"""docs/scaling.md's example runs as documented: two `durably worker` processes and an
enqueuing script share a queue on PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import postgres_url

EXAMPLES = Path(__file__).parents[2] / "docs" / "examples"


def test_workers_and_an_enqueuer_share_the_welcome_queue(
    postgres_schema: str, tmp_path: Path
) -> None:
    """Every e-mail is delivered once, by more than one process; workers stop cleanly
    on SIGTERM."""
    env = {**os.environ, "DURABLY_DB": f"{postgres_url()}?schema={postgres_schema}"}
    logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
    workers = []
    for log in logs:
        with log.open("wb") as output:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "durably", "worker", "welcome_jobs:app"],
                    cwd=EXAMPLES,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        deadline = time.monotonic() + 60
        while not all("started" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            assert all(worker.poll() is None for worker in workers)
            time.sleep(0.05)
        done = subprocess.run(
            [sys.executable, "welcome_jobs.py", "12"],
            cwd=EXAMPLES,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        lines = done.stdout.splitlines()
        assert [line.split(":")[0] for line in lines] == [f"user{n}@example.com" for n in range(12)]
        pids = {re.search(r"pid (\d+)", line).group(1) for line in lines}  # type: ignore[union-attr]
        assert len(pids) >= 2, "one process did all the work"
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker, log in zip(workers, logs, strict=True):
            assert worker.wait(timeout=60) == 0, log.read_text()
            assert "stopped" in log.read_text()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
