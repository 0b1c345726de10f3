"""examples/README.md covers every example and only names things that exist."""

from __future__ import annotations

import re

from .conftest import EXAMPLES

README = EXAMPLES / "README.md"


def example_scripts() -> list[str]:
    """The runnable examples: the modules next to the README."""
    return sorted(path.name for path in EXAMPLES.glob("*.py"))


def test_every_example_has_a_row_and_a_command_in_the_readme() -> None:
    """Each example is in the table and shown being run."""
    text = README.read_text(encoding="utf-8")
    assert len(example_scripts()) == 7
    for script in example_scripts():
        assert f"[`{script}`]({script})" in text, script
        assert f"python examples/{script}" in text, script


def test_readme_commands_name_existing_scripts_and_pause_points() -> None:
    """Every command runs a script that exists; every pause point names a service and
    an operation that the fake services have."""
    text = README.read_text(encoding="utf-8")
    for script in re.findall(r"python examples/(\S+\.py)", text):
        assert (EXAMPLES / script).is_file(), script
    services = "\n".join(
        path.read_text(encoding="utf-8") for path in (EXAMPLES / "fake_services").glob("*.py")
    )
    pauses = re.findall(r"EXAMPLE_PAUSE_AFTER=(\w+)\.(\w+)", text)
    assert pauses
    for service, operation in pauses:
        assert f'name = "{service}"' in services, service
        assert f'self.request("{operation}"' in services, operation
