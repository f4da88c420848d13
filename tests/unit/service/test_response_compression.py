"""``Accept-Encoding`` negotiation and the compressors of V2 infer replies (service.api.response_compression)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from service.api.response_compression import accepted_coding, compress


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip", "gzip"),  # tritonclient.http, response_compression_algorithm="gzip"
        ("deflate", "deflate"),  # ... and "deflate"
        ("gzip, deflate, br, zstd", "gzip"),  # httpx's default
        ("GZIP", "gzip"),
        ("x-gzip", "gzip"),
        ("deflate, gzip", "gzip"),  # equal weights: gzip
        ("gzip;q=0.5, deflate", "deflate"),
        ("gzip; q=0.2, deflate;q=0.9", "deflate"),
        ("deflate;q=1.0, gzip;q=0.999", "deflate"),
        ("gzip;q=0", None),
        ("gzip;q=0, deflate;q=0", None),
        ("gzip;q=0, *", "deflate"),  # the wildcard covers what is not named
        ("*", "gzip"),
        ("*;q=0", None),
        ("identity", None),
        ("identity, gzip", "gzip"),  # equal weights: the coding the client also accepts
        ("gzip;q=0.5, identity", None),  # the client prefers plain
        ("gzip, identity;q=0", "gzip"),
        ("identity;q=0", None),  # nothing acceptable: plain all the same, never 406
        ("br", None),
        ("zstd, br;q=1, compress", None),  # never brotli (or anything else) on V2
        ("", None),
        (" , ,", None),
        ("gzip;q=abc", None),  # malformed weights are ignored, as Triton ignores them
        ("gzip;q=2, deflate", "deflate"),
        ("gzip;q=nan", None),
        ("gzip;q=-1", None),
        ("gzip;level=9", "gzip"),  # other parameters are not weights
    ],
)
def test_accept_encoding_negotiation(accept: str, coding: str | None) -> None:
    assert accepted_coding(accept) == coding


@pytest.mark.parametrize(("coding", "inflate"), [("gzip", gzip.decompress), ("deflate", zlib.decompress)])
def test_compressed_bodies_inflate_the_way_tritonclient_inflates_them(coding: str, inflate: object) -> None:
    body = b'{"model_name":"m","outputs":[]}' * 100 + bytes(range(256))
    packed = compress(body, coding)  # type: ignore[arg-type]
    assert len(packed) < len(body)
    assert inflate(packed) == body  # type: ignore[operator]
