"""examples/README.md covers every example, only names things that exist, and shows
the output that its commands really print."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import (
    EXAMPLES,
    PROCESS_TIMEOUT,
    example_environment,
    finish,
    kill,
    read_lines,
)

README = EXAMPLES / "README.md"
REPOSITORY = EXAMPLES.parent
#: How the README kills the command it started with ``&``.
KILL = "kill -9 %1"

# What may differ between the output shown in the README and a new run, masked on
# both sides before they are compared; everything else must be equal, line for line.
#: The seconds since the program started, at the start of a fake service's trace line
#: ("  0.31s  inventory  reserved ..."): timing varies from run to run.
TRACE_TIME = re.compile(r"^ *\d+\.\d\ds(?=  )")
#: A SHA-256 digest: the upload example's file is made from /dev/urandom.
SHA256 = re.compile(r"\b[0-9a-f]{64}\b")
# Ids (order, charge, document, thing, message...) are not masked: each section runs on
# a fresh state directory, so they come out as shown. Paths under /tmp are not masked
# either: the test's own directory stands for /tmp (see Terminal) and is written back.


def example_scripts() -> list[str]:
    """The runnable examples: the modules next to the README."""
    return sorted(path.name for path in EXAMPLES.glob("*.py"))


@dataclass(frozen=True)
class Shown:
    """A command shown in a README code block (the line after ``$ ``) and the output
    lines shown under it, up to the next command."""

    command: str
    output: list[str] = field(default_factory=list)


def sections() -> dict[str, str]:
    """The text of each example's section (``## 1. E-commerce checkout``...), by title."""
    parts = re.split(r"^## (\d+\. .+)$", README.read_text(encoding="utf-8"), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def shown_commands(section: str) -> list[Shown]:
    """The commands of a section's code blocks, in order, with their shown output."""
    commands: list[Shown] = []
    for block in re.findall(r"^```\w*\n(.*?)^```$", section, flags=re.M | re.S):
        in_block = len(commands)
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append(Shown(line.removeprefix("$ ")))
            elif line and len(commands) > in_block:
                commands[-1].output.append(line)
    return commands


def masked(line: str) -> str:
    """``line`` with what legitimately varies between runs replaced by a placeholder."""
    return SHA256.sub("<sha256>", TRACE_TIME.sub("<time>", line))


class Terminal:
    """Runs the README's commands one after the other, as a user would in one shell,
    from the repository's root. ``/tmp`` is the test's directory: it replaces ``/tmp/``
    in the commands, it is ``TMPDIR`` (so the examples' default state directory is
    there, new for each section), and it is written back as ``/tmp`` in their output."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: The command started with ``&`` (the shell's ``%1``), while it runs.
        self.job: subprocess.Popen[str] | None = None

    def run(self, shown: Shown) -> list[str]:
        """Run one shown command; return the lines the README would show under it.

        A command started with ``&`` is read for as many lines as the README shows under
        it; the rest of its output belongs to the next command, during which it ends
        (the README shows no other case), unless that command is ``kill -9 %1``.
        """
        command = shown.command.replace("/tmp/", f"{self.directory}/")
        if command == KILL:
            assert self.job is not None, "nothing to kill"
            kill(self.job)
            self.job = None
            return []
        if command.endswith(" &"):
            assert self.job is None, "one job at a time"
            args, environment = self._arguments(command.removesuffix(" &"))
            self.job = subprocess.Popen(
                args,
                cwd=REPOSITORY,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            return [self._written_back(line) for line in read_lines(self.job, len(shown.output))]
        args, environment = self._arguments(command)
        completed = subprocess.run(
            args,
            cwd=REPOSITORY,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=PROCESS_TIMEOUT,
            check=False,
        )
        output = completed.stdout
        if self.job is not None:
            output += finish(self.job).output
            self.job = None
        return [self._written_back(line) for line in output.splitlines()]

    def close(self) -> None:
        """Kill a job left running (the test failed before its end)."""
        if self.job is not None:
            kill(self.job)

    def _arguments(self, command: str) -> tuple[list[str], dict[str, str]]:
        """The program and environment for ``command``: an example runs on this Python,
        with the variables set before it; any other command runs in bash."""
        environment = example_environment({"TMPDIR": str(self.directory)})
        words = shlex.split(command)
        while re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            name, _, value = words.pop(0).partition("=")
            environment[name] = value
        if words[0] == "python":
            return [sys.executable, *words[1:]], environment
        if shutil.which(words[0]) is None:
            pytest.skip(f"the README runs {words[0]}, which is not installed")
        return ["bash", "-c", command], environment

    def _written_back(self, line: str) -> str:
        return line.replace(str(self.directory), "/tmp")


def test_every_example_has_a_row_a_section_and_a_command_in_the_readme() -> None:
    """Each example is in the table, has its section and is shown being run."""
    text = README.read_text(encoding="utf-8")
    assert len(example_scripts()) == 7
    assert len(sections()) == 7
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


@pytest.mark.crash
@pytest.mark.parametrize(
    "title", sections(), ids=lambda title: re.sub(r"\W+", "-", title.lower()).strip("-")
)
def test_readme_shows_what_the_commands_print(title: str, tmp_path: Path) -> None:
    """The section's commands, run in order on a fresh state directory, print the lines
    shown under them, after masking trace times and SHA-256 digests."""
    commands = shown_commands(sections()[title])
    assert commands
    shown: list[str] = []
    printed: list[str] = []
    terminal = Terminal(tmp_path)
    try:
        for command in commands:
            shown += [f"$ {command.command}", *map(masked, command.output)]
            printed += [f"$ {command.command}", *map(masked, terminal.run(command))]
    finally:
        terminal.close()
    assert printed == shown
