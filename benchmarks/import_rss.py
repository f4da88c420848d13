"""Run a module as ``__main__`` while recording how much resident memory each import adds.

    python -m benchmarks.import_rss OUT.json service serve --port 8000

Every module load (``importlib``'s ``_load_unlocked``: creating the module, which for an extension is the
``dlopen``, then executing its body) is timed in RSS from ``/proc/self/statm``. A module's *own* RSS is what its
load added minus what the modules it imported while loading added, so a package is not charged for its
dependencies (``structlog`` is not charged for ``rich``). Nested loads are tracked per thread; RSS is the
process's, so another thread allocating meanwhile is charged to whatever is loading (small, at start-up).

At exit (``atexit``: the server stopped with SIGTERM) OUT.json gets ``{"modules": {name: own_kb}, "order":
[names in load order], "parents": {name: the module whose loading imported it}, "files": {"service": its
__file__, "modelport_onnx": ...}}``. No dependency beyond the
standard library: it runs in whichever venv serves.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys
import threading
from typing import Any

__all__ = ("install", "main")

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _rss_kb() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * _PAGE_KB


def install(out_path: str) -> None:
    """Patch ``importlib._bootstrap._load_unlocked`` to attribute RSS; write ``out_path`` at exit."""
    import _frozen_importlib

    bootstrap: Any = _frozen_importlib
    original = bootstrap._load_unlocked
    own: dict[str, int] = {}
    order: list[str] = []
    parents: dict[str, str | None] = {}
    local = threading.local()

    def load_unlocked(spec: Any) -> Any:
        stack: list[list[Any]] = local.__dict__.setdefault("stack", [])
        parents.setdefault(spec.name, stack[-1][0] if stack else None)
        stack.append([spec.name, 0])  # the module loading and what its nested loads add
        before = _rss_kb()
        try:
            return original(spec)
        finally:
            added = _rss_kb() - before
            nested = stack.pop()[1]
            own[spec.name] = own.get(spec.name, 0) + added - nested
            order.append(spec.name)
            if stack:
                stack[-1][1] += added

    bootstrap._load_unlocked = load_unlocked

    def dump() -> None:
        with open(out_path, "w") as fh:
            files = {name: getattr(sys.modules.get(name), "__file__", None) for name in ("service", "modelport_onnx")}
            result = {"modules": own, "order": order, "parents": parents, "files": files, "rss_kb_at_exit": _rss_kb()}
            json.dump(result, fh)

    atexit.register(dump)


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m benchmarks.import_rss OUT.json MODULE [ARGS...]")
    out_path, module = sys.argv[1], sys.argv[2]
    install(out_path)
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
