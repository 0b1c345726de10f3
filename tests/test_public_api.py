"""The public API is curated: __all__ lists exactly the public names."""

from __future__ import annotations

import subprocess
import sys

import durably


def test_all_matches_the_public_names() -> None:
    """Every public attribute of the package is in __all__ and vice versa."""
    public = {
        name
        for name in vars(durably)
        if not name.startswith("_")
        and name != "annotations"  # from __future__ import annotations
        and not isinstance(getattr(durably, name), type(durably))
    }
    assert public == set(durably.__all__) - {"__version__"}


def test_public_names_have_docstrings() -> None:
    """Each exported class and function documents itself."""
    for name in durably.__all__:
        member = getattr(durably, name)
        if callable(member):
            assert member.__doc__, name


def test_importing_durably_imports_no_optional_dependency() -> None:
    """import durably stays on the standard library (no pydantic, psycopg, cryptography)."""
    code = (
        "import sys, durably; "
        "print(','.join(m for m in ('pydantic', 'psycopg', 'cryptography') if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert output == ""
