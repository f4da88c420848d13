"""One-command benchmarks: modelport against a bare-ASGI ceiling and a naive Litestar server, same run.

Run ``.venv/bin/python -m benchmarks.run`` (see ``docs/benchmarks.md``). Every server under test runs in its
own process pinned to CPU 0 and the load generator (``wrk``, else :mod:`benchmarks.pyload`) to CPU 1, so the
ratios printed at the end compare like with like on the same machine, minutes apart.
"""

from __future__ import annotations

__all__ = ()
