"""Generators of hostile inference and admin bodies for property tests and fuzzers (issue 12).

JSON that parses and is wrong in its structure: wrong types in every field, huge, negative and overflowing numbers,
``NaN``/``Infinity``/``1e999`` literals, integers past 2^64, lone UTF-16 surrogates, bytes that are not UTF-8,
nesting thousands deep, repeated keys; and V2 requests around the right field names whose shapes, datatypes,
binary sizes, parameters, header lengths and encodings are plausible or not. :func:`render` writes the JSON text
(``json.dumps`` refuses most of this).
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from typing import Any, NamedTuple

from hypothesis import strategies as st


class Lit(NamedTuple):
    """A JSON token written out as is: what ``json.dumps`` will not produce (``NaN``, ``1e999``, deep nesting)."""

    text: str


class Pairs(NamedTuple):
    """A JSON object that may repeat keys."""

    items: tuple[tuple[str, Any], ...]


def render(value: Any) -> str:
    """JSON text of ``value``; strings keep lone surrogates (``json.dumps`` escapes them as ``\\ud800``), and
    ``\\udc80``-``\\udcff`` in a :class:`Lit` become raw bytes (``surrogateescape``) that are not UTF-8."""
    if isinstance(value, Lit):
        return value.text
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(render(v) for v in value) + "]"
    return json.dumps(value)


BIG_INTS = [2**31, 2**32, 2**40, 2**40 + 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]
DIMS = st.sampled_from([0, 1, 2, 3, -1, -2, *BIG_INTS]) | st.integers(0, 4)
ODD_STRINGS = ["", "\x00", "\ud800", "\udfff", "é", "x" * 2000, "FP32", "../etc", "a\nb", "\u202e"]
ODD_LITERALS = [
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "1e999",
    "-1e999",
    "1e-999",
    "-0",
    str(10**400),
    "0x10",
    "01",
    "1.",
    '"\\ud800"',
    '"\\udc00\\ud800"',
    '"\udcff\udcfe"',  # raw bytes 0xff 0xfe inside a string (not UTF-8)
    '"é"',
    "[" * 2000 + "]" * 2000,
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 3000 + "1" + "}" * 3000,
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.sampled_from(BIG_INTS)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(ODD_STRINGS)
    | st.text(max_size=8)
    | st.sampled_from(ODD_LITERALS).map(Lit)
)
keys = st.sampled_from(["name", "shape", "datatype", "data", "parameters", "binary_data_size", "x", "", "\ud800"])
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(keys, inner, max_size=3)
    | st.lists(st.tuples(keys, inner), min_size=2, max_size=3).map(lambda kv: Pairs(tuple(kv))),
    max_leaves=6,
)


def sometimes(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes any JSON at all."""
    return st.one_of(plausible, plausible, plausible, json_values)


# -- V2 ---------------------------------------------------------------------------------------------------

V2_DATATYPES = ["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "UINT64", "FP16", "FP32", "FP64", "BYTES"]
ODD_DATATYPES = ["fp32", "FP8", "BF16", "", "FP32 ", "STRING", "TYPE_FP32", "\ud800"]
ITEMSIZE = {"BOOL": 1, "UINT8": 1, "INT8": 1, "INT16": 2, "INT32": 4, "INT64": 8, "UINT64": 8}
ITEMSIZE |= {"FP16": 2, "FP32": 4, "FP64": 8}
INPUT_NAMES = ["t0", "t1", "t2", "t3"]
"""The input names requests mostly use (the signatures under test name their inputs so)."""

elements = (
    st.integers(-3, 3)
    | st.floats(-1e6, 1e6)
    | st.sampled_from(BIG_INTS + [-(2**64), 255, 256, -129, 65504.0, 3.5e38, 1.8e308])
    | st.booleans()
    | st.sampled_from(["a", "\ud800", "", "1"])
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", str(10**40)]).map(Lit)
    | st.none()
)


def nest(values: list[Any], width: int) -> list[Any]:
    if width < 1 or len(values) <= width:
        return values
    return [values[i : i + width] for i in range(0, len(values), width)]


data_values = st.one_of(
    st.lists(elements, max_size=9),
    st.tuples(st.lists(elements, max_size=9), st.integers(1, 3)).map(lambda v: nest(*v)),
    st.lists(st.lists(st.lists(elements, max_size=2), max_size=2), max_size=2),
)


class Wire(NamedTuple):
    body: bytes
    headers: dict[str, str]


@st.composite
def v2_requests(draw: st.DrawFn) -> Wire:
    inputs: list[Any] = []
    trailer = b""
    binary = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        datatype = draw(st.sampled_from(V2_DATATYPES) | st.sampled_from(ODD_DATATYPES))
        shape = draw(sometimes(st.lists(DIMS, max_size=4) | st.lists(st.just(1), min_size=33, max_size=40)))
        entry: dict[str, Any] = {
            "name": draw(sometimes(st.sampled_from(INPUT_NAMES))),
            "datatype": draw(sometimes(st.just(datatype))),
            "shape": shape,
        }
        count = _count(shape)
        if binary and draw(st.integers(0, 5)):
            size = _binary_size(datatype, count, draw)
            declared = draw(
                sometimes(st.sampled_from([size, size, size + 1, max(size - 1, 0), -1, 2**63, 2**64]))
                | st.sampled_from([float(size), str(size), True]).map(lambda v: v)
            )
            entry["parameters"] = {"binary_data_size": declared}
            trailer += _binary_payload(datatype, count, size, draw)
        else:
            entry["data"] = draw(sometimes(data_values))
        if draw(st.integers(0, 6)) == 0:
            entry["parameters"] = draw(
                st.dictionaries(
                    st.sampled_from(["binary_data_size", "shared_memory_region", "shared_memory_byte_size", "x"]),
                    json_values,
                    max_size=3,
                )
            )
        if draw(st.integers(0, 8)) == 0:
            entry[draw(keys)] = draw(json_values)
        inputs.append(entry)
    request: dict[str, Any] = {"inputs": draw(sometimes(st.just(inputs)))}
    if draw(st.booleans()):
        request["id"] = draw(sometimes(st.sampled_from(["r1", "\ud800", "x" * 1025, ""])))
    if draw(st.booleans()):
        request["parameters"] = draw(
            sometimes(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "binary_data_output": sometimes(st.booleans()),
                        "timeout": sometimes(st.sampled_from([0, 1, 10**6, -1, 2**63, 2**64]) | st.floats()),
                        "sequence_id": json_values,
                        "priority": json_values,
                        "x": json_values,
                    },
                )
            )
        )
    if draw(st.booleans()):
        request["outputs"] = draw(
            sometimes(
                st.lists(
                    st.fixed_dictionaries(
                        {"name": sometimes(st.sampled_from(["y", "y", "\ud800"]))},
                        optional={
                            "parameters": sometimes(
                                st.fixed_dictionaries(
                                    {},
                                    optional={
                                        "binary_data": json_values,
                                        "classification": sometimes(st.sampled_from([0, 1, 3, -1, 2**63])),
                                        "shared_memory_region": json_values,
                                    },
                                )
                            )
                        },
                    ),
                    max_size=3,
                )
            )
        )
    document = draw(st.sampled_from([request, request, request, Pairs(tuple(request.items()) * 2)]))
    text = render(document).encode("utf-8", "surrogateescape")
    headers: dict[str, str] = {}
    body = text
    if trailer or draw(st.integers(0, 4)) == 0:
        shift = draw(st.sampled_from([0, 0, 0, 0, -1, 1, -len(text) - 1, 10**20]))
        headers["inference-header-content-length"] = draw(
            st.sampled_from([str(len(text) + shift), str(len(text) + shift), "", "abc", "-0", " 5", "1e3", "٣"])
        )
        body = text + trailer
    encoding = draw(st.sampled_from(["", "", "", "gzip", "deflate", "identity, gzip", "br", "gzip, gzip"]))
    if encoding:
        headers["content-encoding"] = encoding
        if "gzip" in encoding:
            body = gzip.compress(body)
            if encoding == "gzip, gzip":
                body = gzip.compress(body)
        elif encoding == "deflate":
            body = zlib.compress(body)
    headers["content-type"] = draw(
        st.sampled_from(["", "application/json", "application/octet-stream", "application/json; charset=bogus"])
    )
    return Wire(body, headers)


def _count(shape: Any) -> int:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        return 1
    if any(d < 0 for d in shape):
        return 1
    product = math.prod(shape)
    return product if product <= 16 else 1


def _binary_size(datatype: str, count: int, draw: st.DrawFn) -> int:
    if datatype == "BYTES":
        return count * 4 + draw(st.integers(0, 6))
    return count * ITEMSIZE.get(datatype, 4)


def _binary_payload(datatype: str, count: int, size: int, draw: st.DrawFn) -> bytes:
    if datatype == "BYTES" and size >= count * 4:
        spare = size - count * 4
        parts = []
        for index in range(count):
            length = spare if index == count - 1 else 0
            length = draw(st.sampled_from([length, length, length + 1, 2**32 - 1]))
            parts.append(length.to_bytes(4, "little") + b"\xff" * min(length, spare))
        payload = b"".join(parts)
    else:
        payload = draw(st.binary(min_size=size, max_size=size)) if size <= 128 else bytes(size)
    return draw(st.sampled_from([payload, payload, payload[:-1], payload + b"\x01"]))


instances = st.one_of(
    st.lists(st.lists(elements, max_size=5), max_size=4),
    st.lists(st.lists(st.lists(elements, max_size=3), max_size=3), max_size=3),
    st.lists(elements, max_size=5),
    st.lists(
        st.dictionaries(
            st.sampled_from(["a", "b", "s", "\ud800", "x"]),
            st.lists(elements, max_size=3) | elements,
            max_size=4,
        ),
        max_size=3,
    ),
    json_values,
)


def wire_of(document: Any, **headers: str) -> Wire:
    return Wire(render(document).encode("utf-8", "surrogateescape"), headers)


def documents(shape: st.SearchStrategy[dict[str, Any]], *, plain_share: int = 10) -> st.SearchStrategy[bytes]:
    """JSON bodies around ``shape`` (an object strategy with the right field names): mostly ``shape`` itself,
    sometimes with its keys repeated or an unknown key added; one in ``plain_share`` is raw bytes and one any JSON."""

    @st.composite
    def draw_document(draw: st.DrawFn) -> bytes:
        kind = draw(st.integers(0, plain_share - 1))
        if kind == 0:
            return draw(st.binary(max_size=64))
        document: Any = draw(json_values) if kind == 1 else draw(shape)
        if kind > 1 and draw(st.integers(0, 6)) == 0:
            document = Pairs((*document.items(), *document.items()))
        elif kind > 1 and draw(st.integers(0, 6)) == 0:
            document = {**document, draw(st.sampled_from(["extra", "name", ""])): draw(json_values)}
        return render(document).encode("utf-8", "surrogateescape")

    return draw_document()
