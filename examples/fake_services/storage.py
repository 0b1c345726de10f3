"""An object store with resumable, chunked upload sessions (like S3 multipart uploads)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from fake_services.base import FakeService, Json, ServiceError


class ChecksumMismatch(ServiceError):
    """The assembled object does not have the checksum the client announced."""


@dataclass(frozen=True)
class ChunkReceipt:
    index: int
    size: int
    sha256: str


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    sha256: str


class ObjectStorage(FakeService):
    """Chunks are files under ``<state dir>/storage/``; the JSON state indexes them."""

    name = "storage"

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.files = state_dir / "storage"
        self.files.mkdir(exist_ok=True)

    def initial_state(self) -> Json:
        return {"sessions": {}, "objects": {}}

    def open_session(self, object_name: str, *, idempotency_key: str) -> str:
        """Start a resumable upload; returns the session id."""

        def apply(state: Json) -> tuple[Json, str]:
            session = f"upload-{len(state['sessions']) + 1}"
            state["sessions"][session] = {"object": object_name, "chunks": {}, "status": "open"}
            return {"session": session}, f"opened session {session} for {object_name}"

        session: str = self.request("open_session", idempotency_key, apply)["session"]
        return session

    def put_chunk(
        self, session: str, index: int, data: bytes, *, idempotency_key: str
    ) -> ChunkReceipt:
        """Store chunk ``index`` of a session."""
        receipt = ChunkReceipt(index, len(data), hashlib.sha256(data).hexdigest())

        def apply(state: Json) -> tuple[Json, str]:
            self._write(self.files / session / f"{index:06d}.part", data)
            state["sessions"][session]["chunks"][str(index)] = receipt.sha256
            return asdict(receipt), f"stored chunk {index} ({len(data)} bytes)"

        return ChunkReceipt(**self.request("put_chunk", idempotency_key, apply))

    def complete(self, session: str, sha256: str, *, idempotency_key: str) -> StoredObject:
        """Assemble the chunks in order into the object, if its checksum is ``sha256``."""

        def apply(state: Json) -> tuple[Json, str]:
            upload = state["sessions"][session]
            parts = [
                (self.files / session / f"{int(i):06d}.part").read_bytes()
                for i in sorted(upload["chunks"], key=int)
            ]
            content = b"".join(parts)
            actual = hashlib.sha256(content).hexdigest()
            if actual != sha256:
                raise ChecksumMismatch(f"object has sha256 {actual[:12]}…, expected {sha256[:12]}…")
            stored = StoredObject(upload["object"], len(content), actual)
            self._write(self.files / "objects" / stored.name, content)
            state["objects"][stored.name] = {"size": stored.size, "sha256": actual}
            upload["status"] = "completed"
            return asdict(stored), f"assembled {stored.name}: {len(parts)} chunks, sha256 verified"

        return StoredObject(**self.request("complete", idempotency_key, apply))

    def abort(self, session: str) -> None:
        """Drop an unfinished session and its chunks."""

        def apply(state: Json) -> tuple[Json, str]:
            for part in (self.files / session).glob("*.part"):
                part.unlink()
            state["sessions"][session]["status"] = "aborted"
            return {}, f"aborted {session}, its chunks deleted"

        self.request("abort", f"abort:{session}", apply)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
