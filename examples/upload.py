"""Resumable file upload: a local file goes up in chunks, one durable step per chunk;
after a crash the upload continues at the first chunk not yet recorded, and the
assembled object's checksum is verified against the file's.

    python examples/upload.py FILE [--name OBJECT] [--chunk-size 4096] [--state DIR] [--db FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fake_services.storage import ChecksumMismatch, ChunkReceipt, ObjectStorage, StoredObject

import durably


@dataclass(frozen=True)
class Upload:
    path: str
    object_name: str
    chunk_size: int


@dataclass(frozen=True)
class Fingerprint:
    size: int
    sha256: str
    chunks: int


def build_app(database: Path, storage: ObjectStorage) -> durably.Durably:
    """The upload workflow and its steps, on ``database``."""
    app = durably.Durably(f"sqlite:///{database}")
    network = durably.RetryPolicy.exponential(
        5, initial_delay=0.2, max_delay=5, dont_retry_on=(ChecksumMismatch,)
    )

    # Reading the file blocks: plain ``def`` steps, which durably runs in a worker thread.
    def fingerprint(upload: Upload) -> Fingerprint:
        digest, size = hashlib.sha256(), 0
        with open(upload.path, "rb") as file:
            while block := file.read(1 << 20):
                digest.update(block)
                size += len(block)
        return Fingerprint(size, digest.hexdigest(), math.ceil(size / upload.chunk_size))

    def upload_chunk(upload: Upload, session: str, index: int) -> ChunkReceipt:
        with open(upload.path, "rb") as file:
            file.seek(index * upload.chunk_size)
            data = file.read(upload.chunk_size)
        key = durably.current_step().idempotency_key
        return storage.put_chunk(session, index, data, idempotency_key=key)

    async def abort(session: str) -> None:
        storage.abort(session)

    @app.step(compensate=abort)
    async def open_session(upload: Upload) -> str:
        key = durably.current_step().idempotency_key
        return storage.open_session(upload.object_name, idempotency_key=key)

    @app.step(retry=network)
    async def complete(session: str, expected: Fingerprint) -> StoredObject:
        key = durably.current_step().idempotency_key
        return storage.complete(session, expected.sha256, idempotency_key=key)

    @app.workflow(name="upload")
    async def upload_file(ctx: durably.Context, upload: Upload) -> StoredObject:
        expected = await ctx.step("fingerprint", fingerprint, upload)
        session = await open_session(upload)
        # Recorded chunks are skipped on replay: a resumed upload sends only the rest.
        for index in range(expected.chunks):
            await ctx.step("upload_chunk", upload_chunk, upload, session, index, retry=network)
        return await complete(session, expected)  # the server checks the whole file

    return app


async def upload(app: durably.Durably, request: Upload) -> int:
    """Run (or resume) the upload of ``request``; return the exit status."""
    workflow_id = f"upload-{request.object_name}"
    async with app:
        try:
            status = (await app.get_workflow(workflow_id)).status
            print(f"{workflow_id}: found {status} in the workflow database")
        except durably.WorkflowNotFoundError:
            print(f"{workflow_id}: new")
        handle: durably.WorkflowHandle[StoredObject] = await app.start(
            "upload", request, workflow_id=workflow_id
        )
        try:
            stored = await handle.result()
        except durably.WorkflowFailedError as error:
            print(f"{workflow_id} {error.status}: {error.error_type}: {error.error_message}")
            return 1
    print(f"{workflow_id} COMPLETED: {stored}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and upload the file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--name", help="object name (default: the file's name)")
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument(
        "--state", type=Path, default=Path(tempfile.gettempdir()) / "durably-examples" / "upload"
    )
    parser.add_argument("--db", type=Path, help="workflow database (default: STATE/workflows.db)")
    args = parser.parse_args(argv)
    if not args.file.is_file() or args.chunk_size < 1:
        parser.error(f"{args.file} is not a readable file, or --chunk-size is not positive")
    request = Upload(str(args.file.resolve()), args.name or args.file.name, args.chunk_size)
    app = build_app(args.db or args.state / "workflows.db", ObjectStorage(args.state))
    return asyncio.run(upload(app, request))


if __name__ == "__main__":
    sys.exit(main())
