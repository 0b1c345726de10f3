"""DBOS Transact's own virtualenv, so that its dependencies never touch durably's.

The suite installs the pinned DBOS release from PyPI into a virtualenv outside the
repository (``$DURABLY_BENCH_DBOS_VENV``, default under the system's temporary
directory) on first use, and runs every DBOS workload there as a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: The DBOS Transact release compared against (pinned so runs stay comparable).
DBOS_VERSION = "3.4.0"


def default_venv() -> Path:
    """Where DBOS's virtualenv lives unless ``$DURABLY_BENCH_DBOS_VENV`` says."""
    configured = os.environ.get("DURABLY_BENCH_DBOS_VENV")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"durably-bench-dbos-{DBOS_VERSION}"


def ensure_dbos(venv: Path, *, install: bool = True) -> tuple[str | None, str]:
    """The Python of a virtualenv with DBOS installed, creating it when allowed.

    Returns:
        ``(python, description)`` when DBOS runs; ``(None, "not measured: <why>")``
        when it cannot be installed or imported here.
    """
    python = venv / "bin" / "python"
    found = _dbos_version(python)
    if found == DBOS_VERSION:
        return str(python), f"DBOS Transact {found} ({venv})"
    if not install:
        return None, f"not measured: DBOS {DBOS_VERSION} is not installed in {venv} (--no-install)"
    try:
        if not python.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True
            )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"dbos=={DBOS_VERSION}"],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or error.stdout or "").strip().splitlines()
        why = detail[-1] if detail else str(error)
        return None, f"not measured: installing dbos=={DBOS_VERSION} failed ({why[:200]})"
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"not measured: installing dbos=={DBOS_VERSION} failed ({error})"
    found = _dbos_version(python)
    if found != DBOS_VERSION:
        return None, f"not measured: dbos=={DBOS_VERSION} installed but does not import ({found})"
    return str(python), f"DBOS Transact {found} ({venv})"


def _dbos_version(python: Path) -> str | None:
    if not python.exists():
        return None
    completed = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip() if completed.returncode == 0 else None
