"""examples/upload.py: a real file goes up in chunks and survives SIGKILL mid-upload."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import duplicates, journal, kill_when_paused, run_example, service_states

pytestmark = pytest.mark.crash

SCRIPT = "upload.py"
CHUNK = 1024


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A 10 000-byte file: ten chunks, the last one short."""
    path = tmp_path / "photo.raw"
    path.write_bytes(random.Random(7).randbytes(10_000))
    return path


def upload(source: Path, state: Path) -> Any:
    """Run the example on ``state``."""
    return run_example(SCRIPT, str(source), "--chunk-size", str(CHUNK), "--state", str(state))


def stored_chunks(output: str) -> list[int]:
    """The chunk indices a process stored, in order (not counting repeated requests)."""
    return [int(index) for index in re.findall(r"^ .*storage    stored chunk (\d+)", output, re.M)]


def test_upload_stores_every_chunk_once_and_the_object_matches(
    source: Path, tmp_path: Path
) -> None:
    """Ten chunks, in order, each stored once; the assembled object equals the file."""
    state = tmp_path / "state"
    finished = upload(source, state)
    assert finished.returncode == 0, finished.output
    assert stored_chunks(finished.output) == list(range(10))
    assert "sha256 verified" in finished.output
    assert (state / "storage" / "objects" / "photo.raw").read_bytes() == source.read_bytes()
    assert len(service_states(state)["storage"]["sessions"]["upload-1"]["chunks"]) == 10


def test_upload_killed_mid_way_resumes_at_the_first_missing_chunk(
    source: Path, tmp_path: Path
) -> None:
    """SIGKILL right after chunk 3 was stored (not yet recorded): the new process sends
    chunk 3 again (answered from its key) and then only chunks 4 to 9."""
    baseline, state = tmp_path / "baseline", tmp_path / "state"
    assert upload(source, baseline).returncode == 0
    before = kill_when_paused(
        SCRIPT,
        str(source),
        "--chunk-size",
        str(CHUNK),
        "--state",
        str(state),
        pause="storage.put_chunk#4",
    )
    assert stored_chunks(before) == [0, 1, 2, 3]
    resumed = upload(source, state)
    assert resumed.returncode == 0, resumed.output
    assert stored_chunks(resumed.output) == list(range(4, 10))
    assert "repeated, not redone: stored chunk 3 (1024 bytes)" in resumed.output
    chunk_keys = [
        e["key"]
        for e in journal(state, "storage")
        if e["operation"] == "put_chunk" and e["outcome"] == "applied"
    ]
    repeated = [e["key"] for e in journal(state, "storage") if e["outcome"] == "duplicate"]
    assert repeated == [chunk_keys[3]]
    assert duplicates(state) == ["storage.put_chunk"]
    assert service_states(state) == service_states(baseline)
    assert (state / "storage" / "objects" / "photo.raw").read_bytes() == source.read_bytes()


def test_file_changed_during_the_crash_fails_the_checksum_and_aborts(
    source: Path, tmp_path: Path
) -> None:
    """The file changes between the crash and the resumption: the assembled object does
    not match the recorded checksum, so the upload session is aborted (compensation)."""
    state = tmp_path / "state"
    kill_when_paused(
        SCRIPT,
        str(source),
        "--chunk-size",
        str(CHUNK),
        "--state",
        str(state),
        pause="storage.put_chunk#4",
    )
    source.write_bytes(random.Random(8).randbytes(10_000))
    resumed = upload(source, state)
    assert resumed.returncode == 1
    assert "COMPENSATED: ChecksumMismatch" in resumed.output
    storage: dict[str, Any] = service_states(state)["storage"]
    assert storage["sessions"]["upload-1"]["status"] == "aborted"
    assert storage["objects"] == {}
    assert list((state / "storage" / "upload-1").glob("*.part")) == []
