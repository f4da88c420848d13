"""Property tests: the V2 decoder only ever raises its declared errors, and binary round trips are exact."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.http._infer_result import InferResult

from service.api.http_body import plain_body
from service.codecs.v2 import decode_infer_request, encode_binary_tensor, encode_infer_response
from service.errors import InvalidInput, NotImplementedFeature, PayloadTooLarge, UnsupportedMediaType
from service.plugins.contract import V2_TO_NUMPY

DECLARED = (InvalidInput, PayloadTooLarge, UnsupportedMediaType, NotImplementedFeature)
MAX = 1 << 16
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def attempt(body: bytes, header_length: int | None, encoding: str | None) -> None:
    try:
        plain = plain_body(body, {"content-encoding": encoding or ""}, MAX)
        request = decode_infer_request(plain, header_length=header_length)
    except DECLARED:
        return
    for tensor in request.inputs:  # whatever decodes is a consistent tensor
        assert isinstance(tensor.data, np.ndarray)
        assert tensor.data.shape == tensor.shape
        assert tensor.data.dtype == V2_TO_NUMPY[tensor.datatype]


encodings = st.sampled_from([None, "gzip", "deflate", "identity", "br", "gzip, identity", ""])


@FAST
@given(body=st.binary(max_size=512), header_length=st.none() | st.integers(-5, 600), encoding=encodings)
def test_arbitrary_bytes_only_raise_declared_errors(
    body: bytes, header_length: int | None, encoding: str | None
) -> None:
    attempt(body, header_length, encoding)


# -- valid requests, then mutated ---------------------------------------------------------------------------

DATATYPES = [d for d in V2_TO_NUMPY if d != "BYTES"]


def array_strategy(datatype: str) -> st.SearchStrategy[np.ndarray]:
    dtype = V2_TO_NUMPY[datatype]
    shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)
    if datatype == "BYTES":
        return shapes.flatmap(
            lambda shape: st.lists(
                st.binary(max_size=6), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))
            ).map(lambda items, shape=shape: _object_array(items, shape))
        )
    elements = None
    if dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
    return hnp.arrays(dtype, shapes, elements=elements)


def _object_array(items: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


tensors = st.sampled_from([*DATATYPES, "BYTES"]).flatmap(
    lambda datatype: st.tuples(st.just(datatype), array_strategy(datatype), st.booleans())
)


def build(items: list[tuple[str, np.ndarray, bool]]) -> tuple[bytes, int | None]:
    """A request like tritonclient builds: binary tensors after the JSON, others as JSON data."""
    inputs: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    for index, (datatype, array, binary) in enumerate(items):
        entry: dict[str, Any] = {"name": f"t{index}", "datatype": datatype, "shape": list(array.shape)}
        if binary:
            payload = bytes(encode_binary_tensor(array, datatype))
            entry["parameters"] = {"binary_data_size": len(payload)}
            payloads.append(payload)
        elif datatype == "BYTES":
            entry["data"] = [x.decode("latin-1") for x in array.reshape(-1).tolist()]
        else:
            entry["data"] = array.reshape(-1).tolist()
        inputs.append(entry)
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    if not payloads:
        return header, None
    return header + b"".join(payloads), len(header)


@FAST
@given(items=st.lists(tensors, min_size=1, max_size=3))
def test_valid_requests_round_trip_exactly(items: list[tuple[str, np.ndarray, bool]]) -> None:
    body, header_length = build(items)
    request = decode_infer_request(body, header_length=header_length)
    assert len(request.inputs) == len(items)
    for (datatype, array, binary), tensor in zip(items, request.inputs, strict=True):
        assert tensor.datatype == datatype and tensor.data.shape == array.shape
        if datatype == "BYTES":
            expected = array.tolist() if binary else [x.decode("latin-1").encode() for x in array.reshape(-1).tolist()]
            got = tensor.data.tolist() if binary else tensor.data.reshape(-1).tolist()
            assert got == expected
        else:
            assert tensor.data.dtype == array.dtype
            np.testing.assert_array_equal(tensor.data, array)


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "cut", "insert", "delete"]), st.integers(0, 10_000), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def mutate(body: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(body)
    for kind, position, value in edits:
        if not data:
            break
        at = position % len(data)
        if kind == "flip":
            data[at] = value
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data.insert(at, value)
        else:
            del data[at]
    return bytes(data)


@FAST
@given(
    items=st.lists(tensors, min_size=1, max_size=2),
    edits=mutations,
    header_shift=st.sampled_from([0, 0, 0, -1, 1, 7]),
    compress=st.sampled_from([None, "gzip", "deflate"]),
)
def test_mutated_requests_only_raise_declared_errors(
    items: list[tuple[str, np.ndarray, bool]],
    edits: list[tuple[str, int, int]],
    header_shift: int,
    compress: str | None,
) -> None:
    body, header_length = build(items)
    if header_length is not None:
        header_length += header_shift
    if compress == "gzip":
        body = gzip.compress(body)
    elif compress == "deflate":
        body = zlib.compress(body)
    attempt(mutate(body, edits), header_length, compress)


@FAST
@given(items=st.lists(tensors, min_size=1, max_size=3), binary=st.booleans())
def test_responses_round_trip_through_tritonclient(items: list[tuple[str, np.ndarray, bool]], binary: bool) -> None:
    outputs = {f"y{i}": array for i, (_, array, _) in enumerate(items)}
    if not binary:  # JSON BYTES outputs must be UTF-8 text
        outputs = {k: v for k, v in outputs.items() if v.dtype != object or all(_utf8(x) for x in v.reshape(-1))}
    body, header_length = encode_infer_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs=outputs,
        output_specs=(),
        requested_outputs=None,
        binary_data_output=binary,
    )
    result = InferResult.from_response_body(body, header_length=header_length)
    for name, array in outputs.items():
        got = result.as_numpy(name)
        assert got.shape == array.shape
        if array.dtype == object:
            assert [x if isinstance(x, bytes) else x.encode() for x in got.reshape(-1).tolist()] == list(
                array.reshape(-1)
            )
        elif binary:
            assert got.dtype == array.dtype
            np.testing.assert_array_equal(got, array)
        else:
            np.testing.assert_array_equal(got.astype(array.dtype), array)


def _utf8(item: bytes) -> bool:
    try:
        item.decode()
    except UnicodeDecodeError:
        return False
    return True
