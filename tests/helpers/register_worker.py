"""Subprocess helper: register versions straight through the store and repository.

``python -m tests.helpers.register_worker URL STORE_DIR COUNT [PAUSE_AT]``: with PAUSE_AT set the process
prints the step name and sleeps there, so a test can SIGKILL it at that exact point.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from registry_db.repository import Registry
from registry_db.session import create_engine
from registry_db.store import ArtifactStore

STEPS = ("before_store", "after_store", "before_commit")


def pause(step: str, pause_at: str | None) -> None:
    if step == pause_at:
        print(step, flush=True)
        time.sleep(60)


async def main(url: str, store_dir: str, count: int, pause_at: str | None) -> None:
    registry = Registry(create_engine(url))
    store = ArtifactStore(Path(store_dir), max_bytes=10**8)
    try:
        for i in range(count):
            pause("before_store", pause_at)

            async def payload(i: int = i) -> object:
                yield f"artifact {i} {time.time_ns()}".encode() * 100

            stored = await store.put_stream(payload())  # type: ignore[arg-type]
            pause("after_store", pause_at)
            original = registry._bump  # noqa: SLF001 - pause inside the transaction, before COMMIT

            async def bump_then_pause(s: object, original: object = original) -> int:
                generation = await original(s)  # type: ignore[arg-type,operator]
                pause("before_commit", pause_at)
                return generation

            registry._bump = bump_then_pause  # type: ignore[method-assign]
            await registry.add_version(
                "race",
                version=None,
                backend="onnx",
                architecture=None,
                architecture_config={},
                sha256=stored.sha256,
                size_bytes=stored.size_bytes,
                storage_path=stored.storage_path,
                signature={},
                preprocessing=None,
                postprocessing=None,
                card={},
                actor=f"worker-{i}",
            )
            registry._bump = original  # type: ignore[method-assign]
        print("done", flush=True)
    finally:
        await registry.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None))
