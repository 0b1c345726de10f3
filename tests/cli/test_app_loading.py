"""Finding the app named by ``module:attribute`` or ``path/file.py:attribute``: what
``durably worker``, ``replay`` and ``doctor`` are given. One loader serves them all;
each way of getting the name wrong is a ConfigurationError that says what to fix,
and the worker reports it in one line, exit code 2, without a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from durably import Durably, SyncDurably
from durably.admin import load_app
from durably.errors import ConfigurationError

APP_MODULE = """
from durably import Durably, MemoryStore, SyncDurably

app = Durably(MemoryStore())
sync_app = SyncDurably(MemoryStore())


class Holder:
    nested = app


not_an_app = 42
"""


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory, made the current one, holding ``shop_app.py`` (apps) and
    ``broken_app.py`` (raises NameError on import); both are forgotten afterwards."""
    (tmp_path / "shop_app.py").write_text(APP_MODULE)
    (tmp_path / "broken_app.py").write_text("x = 1\nraise_here = undefined_name\n")
    (tmp_path / "needs_dependency.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path
    for name in ("shop_app", "broken_app", "needs_dependency"):
        sys.modules.pop(name, None)


def test_an_app_is_found_by_module_dotted_attribute_or_file_path(modules: Path) -> None:
    """module:attribute from the current directory, a dotted attribute, a file path,
    and a SyncDurably (which stands for the app it wraps) all give the same app."""
    app = load_app("shop_app:app")
    assert isinstance(app, Durably)
    assert load_app("shop_app:Holder.nested") is app
    assert load_app(f"{modules}/shop_app.py:app") is app
    synced = load_app("shop_app:sync_app")
    shop_app = sys.modules["shop_app"]
    assert isinstance(shop_app.sync_app, SyncDurably) and synced is shop_app.sync_app.app


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("shop_app", "must be given as module:attribute"),
        (":app", "must be given as module:attribute"),
        ("no_such_module_xyz:app", "cannot import module 'no_such_module_xyz'"),
        ("shop_app:missing", "module 'shop_app' has no attribute 'missing'"),
        ("shop_app:not_an_app", "'shop_app:not_an_app' is a int, not a durably app"),
        (
            "broken_app:app",
            r"importing module 'broken_app' failed: NameError: name 'undefined_name' is "
            r"not defined \(at .*broken_app.py:2\)",
        ),
        (
            "needs_dependency:app",
            r"importing module 'needs_dependency' failed: ModuleNotFoundError: No module "
            r"named 'no_such_dependency_xyz' \(at .*needs_dependency.py:1\)",
        ),
    ],
)
def test_each_wrong_name_says_what_to_fix(modules: Path, spec: str, message: str) -> None:
    """A malformed spec, a missing module, a missing attribute, something that is not
    an app, and a module that raises (or lacks a dependency of its own) while it is
    imported: a ConfigurationError each, whose message names the problem (and, for a
    module that raised, where), with the module's own error chained."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_app(spec)
    if spec.startswith(("broken_app", "needs_dependency")):
        assert caught.value.__cause__ is not None


def test_the_worker_reports_a_module_that_raises_in_one_line(modules: Path) -> None:
    """`durably worker broken_app:app`: exit code 2, the error on stderr in one line
    (no traceback), and no worker started."""
    ran = subprocess.run(
        [sys.executable, "-m", "durably", "worker", "broken_app:app"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=modules,
        check=False,
    )
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr
    assert "durably worker: importing module 'broken_app' failed: NameError" in ran.stderr
    assert "started" not in ran.stderr
