"""The shared-memory row of the ``large`` suite: a 3x224x224 FP32 input read from, and its output written to,
regions registered with the server (Triton's system shared-memory extension), so each request body is a few
hundred bytes of JSON naming them.

The load generator then sends that small body like any other (wrk or ``benchmarks.pyload``): what is measured is
the server's cost per request. A real client also writes its input into the region and reads the output back
(one ``memcpy`` each, about 50 us for 602 KB); every request of the load names the same regions, so concurrent
requests overwrite one output region, which changes nothing about the server's work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

__all__ = ("registered_regions", "shm_infer_body")

_SHM = Path("/dev/shm")  # noqa: S108 - POSIX shared-memory objects


def shm_infer_body(input_name: str, x: np.ndarray, output_name: str, output_bytes: int) -> bytes:
    """V2 JSON infer body whose input and output live in the regions ``bench-in`` and ``bench-out``."""
    header = {
        "id": "bench",
        "inputs": [
            {
                "name": input_name,
                "shape": list(x.shape),
                "datatype": "FP32",
                "parameters": {"shared_memory_region": "bench-in", "shared_memory_byte_size": x.nbytes},
            }
        ],
        "outputs": [
            {
                "name": output_name,
                "parameters": {"shared_memory_region": "bench-out", "shared_memory_byte_size": output_bytes},
            }
        ],
    }
    return json.dumps(header).encode()


@contextmanager
def registered_regions(base_url: str, token: str, x: np.ndarray, output_bytes: int) -> Iterator[None]:
    """Create the two shared-memory objects (``x`` written into the input one), register them with the server,
    and on exit unregister and unlink them."""
    tag = f"modelport-bench-{os.getpid()}"
    objects = {"bench-in": (_SHM / f"{tag}-in", x.nbytes), "bench-out": (_SHM / f"{tag}-out", output_bytes)}
    objects["bench-in"][0].write_bytes(np.ascontiguousarray(x, dtype="<f4").tobytes())
    objects["bench-out"][0].write_bytes(bytes(output_bytes))
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
            for name, (path, size) in objects.items():
                body = {"key": f"/{path.name}", "offset": 0, "byte_size": size}
                reply = client.post(f"/v2/systemsharedmemory/region/{name}/register", json=body)
                if reply.status_code != 200:
                    raise RuntimeError(f"registering region {name} failed: {reply.status_code} {reply.text[:300]}")
        yield
    finally:
        try:
            with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
                client.post("/v2/systemsharedmemory/unregister")
        except httpx.HTTPError:
            pass  # the server is gone: nothing left registered
        for path, _ in objects.values():
            path.unlink(missing_ok=True)
