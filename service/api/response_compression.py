"""Compression of V2 infer replies: ``Accept-Encoding`` negotiation, then gzip or deflate (issue 16 item 6).

Triton's HTTP server compresses an infer reply when the request's ``Accept-Encoding`` picks gzip or deflate
(tritonclient.http's ``response_compression_algorithm`` sends exactly that header), and only infer replies:
health, metadata, errors and the extensions are always plain. We do the same, with three differences that
each keep a client's view identical and only save work:

- a reply under ``min_bytes`` (``MODELPORT_RESPONSE_COMPRESSION_MIN_BYTES``, 1 KiB) stays plain: it fits one
  TCP segment either way, gzip saves a few bytes on it, and setting the compressor up costs more CPU than the
  rest of the reply's encoding (Starlette and Litestar skip under 500 bytes, nginx and Envoy under 20-30);
- a reply that does not get smaller (random floats in binary often do not) is sent plain;
- level 1, not zlib's default 6: on the JSON reply of a 3x224x224 FP32 tensor (2.9 MB) level 6 took 5.6x as
  long for 0.45 instead of 0.48 of the size, 4.7x on an image-like binary one for the same ratio (docs/api.md).

Clients cannot tell these apart from a server that never compresses: ``Content-Encoding`` is per reply and
both tritonclient and httpx read it on every one. For a reply with binary outputs the body is compressed as a
whole and ``Inference-Header-Content-Length`` keeps counting the uncompressed JSON part, as Triton's
``InferRequestClass::FinalizeResponse`` does and as tritonclient's ``InferResult`` expects (it inflates first).
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Literal

__all__ = ("COMPRESSION_LEVEL", "INLINE_COMPRESS_BYTES", "ResponseCoding", "accepted_coding", "compress")

ResponseCoding = Literal["gzip", "deflate"]

COMPRESSION_LEVEL = 1
"""zlib level for replies: the fastest; see the module docstring for what the default level would cost."""
INLINE_COMPRESS_BYTES = 16 * 1024
"""Replies up to this size compress on the event loop (tens of microseconds); larger ones in a worker thread
(zlib releases the GIL), so that a multi-megabyte reply never holds every other request meanwhile."""

_WBITS: dict[ResponseCoding, int] = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""gzip framing, and HTTP's ``deflate``: the zlib format (RFC 9110 8.4.1.2), which tritonclient inflates
with ``zlib.decompress``."""
_NAMES: dict[str, ResponseCoding] = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def _qvalue(params: str) -> float | None:
    """The ``q`` weight of one ``Accept-Encoding`` entry (1 when absent); None when it is malformed."""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            return q if 0.0 <= q <= 1.0 else None  # NaN fails both comparisons
    return 1.0


@lru_cache(maxsize=256)
def accepted_coding(accept_encoding: str) -> ResponseCoding | None:
    """The coding to send for an ``Accept-Encoding`` value (RFC 9110 12.5.3), or None to send the reply plain.

    The coding with the highest non-zero weight wins, gzip on a tie (every client that inflates deflate also
    inflates gzip, and gzip has no raw-versus-zlib ambiguity). ``*`` gives its weight to a coding the value does
    not name; ``identity`` weighted above the best coding keeps the reply plain. Unknown codings (br, zstd,
    compress) are ignored, so is a malformed entry (as Triton ignores it); no coding acceptable means plain,
    never 406: identity is always what a client gets when nothing else fits. Cached: clients send few values.
    """
    named: dict[ResponseCoding, float] = {}
    wildcard = 0.0
    identity: float | None = None
    for entry in accept_encoding.split(","):
        name, _, params = entry.partition(";")
        name = name.strip().lower()
        q = _qvalue(params)
        if not name or q is None:
            continue
        if name == "*":
            wildcard = q
        elif name == "identity":
            identity = q
        elif name in _NAMES:
            named.setdefault(_NAMES[name], q)
    best: ResponseCoding | None = None
    best_q = 0.0
    for coding in ("gzip", "deflate"):
        q = named.get(coding, wildcard)
        if q > best_q:
            best, best_q = coding, q
    if best is None or (identity is not None and identity > best_q):
        return None
    return best


def compress(body: bytes, coding: ResponseCoding) -> bytes:
    """``body`` compressed with ``coding`` at ``COMPRESSION_LEVEL``; runs on the loop or in a worker thread."""
    compressor = zlib.compressobj(COMPRESSION_LEVEL, zlib.DEFLATED, _WBITS[coding])
    return compressor.compress(body) + compressor.flush()
