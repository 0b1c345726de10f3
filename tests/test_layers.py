"""Imports flow one way (STYLE.md): lower layers never import higher ones."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "durably"

#: The parts of ``Durably`` (app_*.py): engine.py composes them, lower layers never
#: import them.
APP_PARTS = {
    "durably.app_actions",
    "durably.app_declarations",
    "durably.app_lifecycle",
    "durably.app_reads",
    "durably.app_runs",
    "durably.app_state",
}

#: What the parts of ``Durably`` must not import: the app they make up, and the layers
#: above it.
ABOVE_APP_PARTS = {
    "durably.engine",
    "durably.sync",
    "durably.admin",
    "durably.cli",
    "durably.dashboard",
}

#: Modules that must not import the modules listed for them.
FORBIDDEN = {
    "store": {
        "durably.engine",
        "durably.runner",
        "durably.context",
        "durably.worker",
        "durably.sync",
        *APP_PARTS,
    },
    "models.py": {"durably.store", "durably.engine", "durably.context", "asyncio"},
    "errors.py": {"durably"},
    "retry.py": {"asyncio", "durably.store", "durably.engine"},
    "replay.py": {"asyncio", "durably.store", "durably.engine"},
    "saga.py": {"asyncio", "durably.store", "durably.engine"},
    "codec.py": {"asyncio", "durably.store", "durably.engine", "pydantic"},
    "runner.py": {"durably.engine", "durably.sync", *APP_PARTS},
    "context.py": {"durably.engine", "durably.runner", "durably.sync", *APP_PARTS},
    **{part.removeprefix("durably.") + ".py": ABOVE_APP_PARTS for part in APP_PARTS},
}


_SCAN = """
import ast, json, sys
found = {}
for name in sys.argv[1:]:
    with open(name, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    found[name] = sorted(modules)
print(json.dumps(found))
"""


@functools.cache
def all_imports() -> dict[str, set[str]]:
    """The imports of every module of the package (imports inside functions included).

    Parsed in a fresh interpreter: CPython 3.11 before 3.11.8 (gh-106905) can raise
    "AST constructor recursion depth mismatch" in a process whose threads compile.
    """
    paths = [str(path) for path in sorted(PACKAGE.rglob("*.py"))]
    scanned = subprocess.run(
        [sys.executable, "-c", _SCAN, *paths], capture_output=True, text=True, check=True
    )
    return {name: set(modules) for name, modules in json.loads(scanned.stdout).items()}


def imported_modules(path: Path) -> set[str]:
    """Top-level imports of a module (imports inside functions included)."""
    return all_imports()[str(path)]


@pytest.mark.parametrize("target", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(target: str) -> None:
    """Each listed module (or package) stays below the layers it must not import."""
    paths = (
        sorted((PACKAGE / target).rglob("*.py"))
        if (PACKAGE / target).is_dir()
        else [PACKAGE / target]
    )
    for path in paths:
        for name in imported_modules(path):
            for forbidden in FORBIDDEN[target]:
                if forbidden == "durably":
                    assert not name.startswith("durably"), f"{path.name} imports {name}"
                else:
                    assert name != forbidden and not name.startswith(forbidden + "."), (
                        f"{path.relative_to(PACKAGE)} imports {name}"
                    )
