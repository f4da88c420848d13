"""Property tests: structured-but-wrong inference bodies, decoded the way the server decodes them, give either a
request the next step can use or a client error (4xx, or 501 for an unimplemented extension) whose reply encodes.

Where ``test_v2_properties`` throws random and mutated bytes at the V2 decoder, this file builds requests that
parse as JSON and are wrong in their structure: wrong types in every field, shapes that are huge, negative, past
2^63 or with a 0 dimension, nesting thousands deep, ``NaN``/``Infinity``/``1e999`` literals, integers past 2^64,
lone UTF-16 surrogates, unknown datatypes, binary sizes that do not add up, odd parameters and encodings. Each
example runs the server's whole path up to the engine: ``plain_body`` (media type, Content-Encoding, cap) ->
``header_length`` -> the codec -> the version's :class:`InputValidator` -> encoding the response (which echoes
the request ``id``) or the error reply (which names the offending field). The V1 predict codec gets the same
treatment against several signatures.
"""

from __future__ import annotations

import gzip
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.http_body import header_length, plain_body
from service.codecs.v1 import decode_predict_request
from service.codecs.v2 import decode_infer_request, encode_infer_response
from service.errors import ModelportError, NotImplementedFeature, status_of
from service.exception_handlers import error_reply
from service.inference.validation import InputValidator
from service.plugins.contract import TensorSpec
from tests.helpers.hostile import Lit, Pairs, Wire, instances, json_values, render, v2_requests, wire_of

MAX_BODY = 1 << 20
HOSTILE = settings(
    max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


SIGNATURE = (
    TensorSpec("t0", "FP32", (-1, 2)),
    TensorSpec("t1", "BYTES", (-1,)),
    TensorSpec("t2", "INT64", (-1, -1)),
    TensorSpec("t3", "BOOL", (-1,)),
)
VALIDATOR = InputValidator.from_specs(SIGNATURE, max_batch_size=8)


def _is_client_error(exc: BaseException) -> bool:
    return isinstance(exc, ModelportError) and (400 <= exc.status < 500 or isinstance(exc, NotImplementedFeature))


def _answers(exc: BaseException) -> None:
    """The exception is ours and 4xx (501), and its reply (which quotes client text) encodes as JSON."""
    assert _is_client_error(exc), f"{type(exc).__name__}: {exc}"
    status, payload, _ = error_reply(exc, "req")
    assert status == status_of(exc)
    assert isinstance(msgspec.json.decode(payload)["error"], str)


def serve_v2(wire: Wire) -> None:
    """The V2 infer path of ``InferenceHTTP.v2_infer`` up to the engine, then the response encoding."""
    try:
        plain = plain_body(wire.body, wire.headers, MAX_BODY)
        request = decode_infer_request(plain, header_length=header_length(wire.headers))
        arrays = VALIDATOR.validate(request.inputs)
    except Exception as exc:  # noqa: BLE001 - the property: only client errors come out
        _answers(exc)
        return
    for tensor in request.inputs:
        assert tensor.data.shape == tensor.shape
    rows = next(iter(arrays.values())).shape[0] if arrays else 1
    try:
        encode_infer_response(
            model_name="m",
            model_version="1",
            request_id=request.id,
            outputs={"y": np.zeros((rows, 2), np.float32)},
            output_specs=(TensorSpec("y", "FP32", (-1, 2)),),
            requested_outputs=None,
            binary_data_output=request.binary_data_output,
        )
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"a request that decoded and validated cannot be answered: {exc!r}") from exc


@HOSTILE
@given(wire=v2_requests())
def test_structured_v2_requests_answer_a_client_error_or_decode(wire: Wire) -> None:
    serve_v2(wire)


T0 = {"name": "t0", "datatype": "FP32", "shape": [1, 2]}


FOUND_V2 = [
    wire_of({"inputs": [{**T0, "data": [1, 2]}], "id": "\ud800"}),  # lone surrogate echoed in the response
    wire_of({"inputs": [{**T0, "name": "\ud800", "data": [1, 2]}]}),  # and quoted in an error
    wire_of({"inputs": [{"name": "t1", "datatype": "BYTES", "shape": [1], "data": ["\ud800"]}]}),
    wire_of({"inputs": [{**T0, "data": [1, 2]}], "outputs": [{"name": "\udfff"}]}),
    wire_of({"inputs": [{**T0, "data": [Lit("1e999"), 1]}]}),
    wire_of({"inputs": [{**T0, "data": [Lit(str(10**400)), 1]}]}),
    wire_of({"inputs": [{"name": "t2", "datatype": "INT64", "shape": [1, 1], "data": [2**64]}]}),
    wire_of({"inputs": [{"name": "t2", "datatype": "INT64", "shape": [1, 1], "data": [[[[Lit("1e999")]]]]}]}),
    wire_of({"inputs": [{**T0, "shape": [2**63, 2**63, 0], "data": []}]}),
    wire_of({"inputs": [{**T0, "shape": [1, 2], "data": [Lit("[" * 100_000 + "]" * 100_000)]}]}),
    wire_of({"inputs": [T0], "parameters": {"timeout": 2**64}}),
    wire_of(
        {"inputs": [{**T0, "parameters": {"binary_data_size": 2**64}}]}, **{"inference-header-content-length": "0"}
    ),
    wire_of({"inputs": [{**T0, "data": [1, 2]}], "parameters": {"sequence_id": Lit("1e999")}}),
    wire_of({"inputs": [{**T0, "data": [1, 2]}], "outputs": [{"name": "y", "parameters": {"classification": 2**63}}]}),
]
"""Cases that once gave 500s or that the property test found, kept explicit."""


@pytest.mark.parametrize("wire", FOUND_V2)
def test_found_v2_cases(wire: Wire) -> None:
    serve_v2(wire)


# -- V1 predict -------------------------------------------------------------------------------------------

V1_SIGNATURES: list[tuple[TensorSpec, ...]] = [
    (TensorSpec("input", "FP32", (-1, 4)),),
    (TensorSpec("img", "UINT8", (-1, 2, 2)),),
    (TensorSpec("ids", "INT64", (-1,)),),
    (TensorSpec("text", "BYTES", (-1,)),),
    (TensorSpec("flag", "BOOL", (-1, 3)),),
    (TensorSpec("half", "FP16", (-1, 2)),),
    (TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "INT32", (-1,)), TensorSpec("s", "BYTES", (-1,))),
]
V1_VALIDATORS = [InputValidator.from_specs(specs, max_batch_size=8) for specs in V1_SIGNATURES]


@st.composite
def v1_requests(draw: st.DrawFn) -> tuple[int, Wire]:
    signature = draw(st.integers(0, len(V1_SIGNATURES) - 1))
    document: Any = {"inputs": draw(instances)}
    if draw(st.integers(0, 5)) == 0:
        document = draw(
            st.sampled_from([Pairs(tuple(document.items()) * 2), {**document, "instances": 1}]) | json_values
        )
    text = render(document).encode("utf-8", "surrogateescape")
    headers = {"content-type": draw(st.sampled_from(["", "application/json", "text/plain"]))}
    if draw(st.integers(0, 4)) == 0:
        headers["content-encoding"] = "gzip"
        text = gzip.compress(text)
    return signature, Wire(text, headers)


def serve_v1(signature: int, wire: Wire) -> None:
    """``InferenceHTTP.v1_predict`` up to the engine: plain body, then the codec against the served signature."""
    try:
        plain = plain_body(wire.body, wire.headers, MAX_BODY)
        tensors = decode_predict_request(plain, V1_SIGNATURES[signature])
        V1_VALIDATORS[signature].validate(tensors)
    except Exception as exc:  # noqa: BLE001
        _answers(exc)
        return
    for tensor in tensors:
        assert tensor.data.shape == tensor.shape


@HOSTILE
@given(case=v1_requests())
def test_structured_v1_requests_answer_a_client_error_or_decode(case: tuple[int, Wire]) -> None:
    serve_v1(*case)


FOUND_V1 = [
    (3, wire_of({"inputs": ["\ud800"]})),  # BYTES instance with a lone surrogate
    (6, wire_of({"inputs": [{"a": [1, 2], "b": 1, "s": "\ud800"}]})),
    (6, wire_of({"inputs": [{"a": [1, 2], "b": 2**40, "s": "x"}]})),
    (6, wire_of({"inputs": [{"a": [1, "x"], "b": 1, "s": "x"}]})),
    (6, wire_of({"inputs": [{"a": [[1, 2], [3]], "b": 1, "s": "x"}]})),
    (6, wire_of({"inputs": [{"a": [1, 2], "b": 1, "s": ["x", ["y"]]}]})),
    (6, wire_of({"inputs": [{"a": [1, 2], "b": 1, "s": 5}]})),
    (6, wire_of({"inputs": [{"a": [1, 2], "b": None, "s": "x"}]})),
    (6, wire_of({"inputs": [{"a": Lit("1e999"), "b": 1, "s": "x"}]})),
    (0, wire_of({"inputs": [[Lit("1e999"), 1, 2, 3]]})),
    (1, wire_of({"inputs": [[[0, 1], [2, 256]]]})),
    (2, wire_of({"inputs": [2**64]})),
    (5, wire_of({"inputs": [[1e300, 1]]})),
    (4, wire_of({"inputs": [[True, 1, False]]})),
]


@pytest.mark.parametrize(("signature", "wire"), FOUND_V1)
def test_found_v1_cases(signature: int, wire: Wire) -> None:
    serve_v1(signature, wire)
