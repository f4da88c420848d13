"""V2 codec: JSON and binary tensor extension, checked against tritonclient's own request builder and parser."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import msgspec
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.http._infer_result import InferResult
from tritonclient.http._utils import _get_inference_request

from service.api.http_body import plain_body
from service.codecs.v2 import (
    DecodedInferRequest,
    OutputRequest,
    decode_infer_request,
    decompress_body,
    encode_infer_response,
)
from service.errors import InvalidInput, NotImplementedFeature, PayloadTooLarge, UnsupportedMediaType
from service.plugins.contract import TensorSpec

MAX = 1 << 20


def decode(body: bytes, header_length: int | None = None, encoding: str | None = None, max_bytes: int = MAX):
    plain = plain_body(body, {"content-encoding": encoding or ""}, max_bytes)
    return decode_infer_request(plain, header_length=header_length)


def triton_request(
    tensors: list[tuple[str, np.ndarray, str]],
    *,
    binary: bool,
    outputs: list[httpclient.InferRequestedOutput] | None = None,
    request_id: str = "",
    timeout: int | None = None,
) -> tuple[bytes, int | None]:
    """The exact body and header length tritonclient's InferenceServerClient.infer() would send."""
    inputs = []
    for name, array, datatype in tensors:
        inp = httpclient.InferInput(name, list(array.shape), datatype)
        inp.set_data_from_numpy(array, binary_data=binary)
        inputs.append(inp)
    body, json_size = _get_inference_request(
        inputs=inputs,
        request_id=request_id,
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=timeout,
        custom_parameters=None,
    )
    return (body if isinstance(body, bytes) else body.encode()), json_size


def as_dict(request: DecodedInferRequest) -> dict[str, np.ndarray]:
    return {t.name: t.data for t in request.inputs}


# -- requests -------------------------------------------------------------------------------------------------

SAMPLES: list[tuple[str, np.ndarray]] = [
    ("FP32", np.arange(12, dtype=np.float32).reshape(3, 4) / 7),
    ("FP64", np.linspace(-1, 1, 6).reshape(2, 3)),
    ("FP16", np.array([[0.5, -2.0, 65504.0]], dtype=np.float16)),
    ("INT8", np.array([[-128, 0, 127]], dtype=np.int8)),
    ("INT16", np.array([[-300, 300]], dtype=np.int16)),
    ("INT32", np.array([[1, -2, 3]], dtype=np.int32)),
    ("INT64", np.array([[2**40, -(2**40)]], dtype=np.int64)),
    ("UINT8", np.array([[0, 255]], dtype=np.uint8)),
    ("UINT16", np.array([[65535]], dtype=np.uint16)),
    ("UINT32", np.array([[2**32 - 1]], dtype=np.uint32)),
    ("UINT64", np.array([[2**64 - 1]], dtype=np.uint64)),
    ("BOOL", np.array([[True, False, True]])),
    ("BYTES", np.array([[b"hello", b"", "wörld".encode()]], dtype=object)),
]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize(("datatype", "array"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_tritonclient_requests_decode_exactly(datatype: str, array: np.ndarray, binary: bool) -> None:
    body, header_length = triton_request([("x", array, datatype)], binary=binary)
    assert (header_length is not None) == binary
    request = decode(body, header_length)
    (tensor,) = request.inputs
    assert tensor.name == "x" and tensor.datatype == datatype and tensor.shape == array.shape
    assert tensor.data.shape == array.shape
    if datatype == "BYTES":
        assert tensor.data.dtype == object and tensor.data.tolist() == array.tolist()
    else:
        assert tensor.data.dtype == array.dtype
        np.testing.assert_array_equal(tensor.data, array)


def test_several_binary_inputs_follow_in_order_and_json_mixes() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([[b"ab"], [b"c"]], dtype=object)
    c = np.array([[1], [2]], dtype=np.int64)
    inputs = []
    for name, arr, dt, binary in (("a", a, "FP32", True), ("b", b, "BYTES", True), ("c", c, "INT64", False)):
        inp = httpclient.InferInput(name, list(arr.shape), dt)
        inp.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(inp)
    body, size = _get_inference_request(inputs, "r1", None, 0, False, False, 0, 2500, None)
    request = decode(body, size)
    got = as_dict(request)
    np.testing.assert_array_equal(got["a"], a)
    assert got["b"].tolist() == [[b"ab"], [b"c"]]
    np.testing.assert_array_equal(got["c"], c)
    assert request.id == "r1"
    assert request.timeout_us == 2500
    assert request.outputs is None and request.binary_data_output is True  # tritonclient's default


def test_requested_outputs_and_flags() -> None:
    outs = [httpclient.InferRequestedOutput("logits", binary_data=False), httpclient.InferRequestedOutput("p")]
    body, size = triton_request([("x", np.zeros((1, 2), np.float32), "FP32")], binary=True, outputs=outs)
    request = decode(body, size)
    assert request.outputs == [OutputRequest("logits", False, 0), OutputRequest("p", True, 0)]
    assert request.binary_data_output is False


def test_binary_inputs_are_zero_copy_views_when_aligned() -> None:
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 16}}]}
    ).encode()
    header += b" " * (-len(header) % 8)  # make the tensor start 8-byte aligned inside the body
    body = header + np.arange(4, dtype="<f4").tobytes()
    tensor = decode(body, len(header)).inputs[0]
    np.testing.assert_array_equal(tensor.data, [[0, 1], [2, 3]])
    assert np.shares_memory(tensor.data, np.frombuffer(body, dtype=np.uint8))
    assert not tensor.data.flags.writeable


def test_unaligned_binary_input_is_copied_and_correct() -> None:
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "parameters": {"binary_data_size": 24}}]}
    ).encode()
    header += b" " * ((-len(header) % 8) + 3)
    body = header + np.array([1.5, -2.5, 3.25]).tobytes()
    tensor = decode(body, len(header)).inputs[0]
    assert tensor.data.flags.aligned
    np.testing.assert_array_equal(tensor.data, [1.5, -2.5, 3.25])


@pytest.mark.parametrize(
    ("data", "shape", "datatype", "expected"),
    [
        ([[1, 2], [3, 4]], [2, 2], "FP32", [[1, 2], [3, 4]]),
        ([[[1]], [[2]]], [2, 1, 1], "INT32", [[[1]], [[2]]]),
        ([1, 2, 3, 4], [2, 2], "FP64", [[1, 2], [3, 4]]),
        ([[True], [False]], [2, 1], "BOOL", [[True], [False]]),
        ([["a", "b"], ["[c]", "d"]], [2, 2], "BYTES", [[b"a", b"b"], [b"[c]", b"d"]]),
        ([], [0, 3], "FP32", np.zeros((0, 3))),
    ],
)
def test_json_data_flat_or_nested(data: Any, shape: list[int], datatype: str, expected: Any) -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}).encode()
    tensor = decode(body).inputs[0]
    assert tensor.data.shape == tuple(shape)
    assert tensor.data.tolist() == np.asarray(expected).tolist()


def test_large_integers_keep_their_precision_and_floats_take_the_fast_path() -> None:
    big = 2**60 + 1  # not representable as a float64
    body = json.dumps(
        {
            "inputs": [
                {"name": "i", "datatype": "INT64", "shape": [2], "data": [big, -big]},
                {"name": "f", "datatype": "FP32", "shape": [2], "data": [1, 2.5]},
            ]
        }
    ).encode()
    got = as_dict(decode(body))
    assert got["i"].tolist() == [big, -big]
    assert got["f"].dtype == np.float32 and got["f"].tolist() == [1.0, 2.5]
    with pytest.raises(InvalidInput, match="out of range for INT64"):
        decode(json_body(datatype="INT64", data=[2**63, 0]))
    with pytest.raises(InvalidInput, match="out of range for UINT64"):
        decode(json_body(datatype="UINT64", data=[2**64, 0]))
    overflow = as_dict(decode(json_body(data=[1e39, -1e39])))["x"]
    assert np.isinf(overflow).all()  # FP32 overflow becomes inf; validation refuses it


def json_body(**tensor: Any) -> bytes:
    base = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}
    base.update(tensor)
    return json.dumps({"inputs": [{k: v for k, v in base.items() if v is not None}]}).encode()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "malformed JSON"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}', "NaN"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [Infinity]}]}', "finite"),
        (b'{"inputs": "x"}', "Expected `array`"),
        (b'{"outputs": []}', "inputs"),
        (json_body(datatype="BF16"), "unknown datatype 'BF16'"),
        (json_body(data=[1.0]), "needs 2 values, data has 1"),
        (json_body(data=["1.0", "2.0"]), "does not match datatype FP32"),
        (json_body(datatype="INT8", data=[1, 300]), "out of range for INT8"),
        (json_body(datatype="UINT8", data=[1, -1]), "out of range for UINT8"),
        (json_body(datatype="BOOL", data=[1, 0]), "does not match datatype BOOL"),
        (json_body(datatype="INT32", data=[1.5, 2]), "does not match datatype INT32"),
        (json_body(datatype="BYTES", data=[1, 2]), "does not match datatype BYTES"),
        (json_body(datatype="BYTES", data=[["a"], [2]]), "must hold strings"),
        (json_body(data="[1, 2]"), "does not match"),
        (json_body(data={"a": [1]}), "array"),
        (json_body(shape=[1, -2]), "shape"),
        (json_body(data=None), "neither 'data' nor parameters.binary_data_size"),
        (json_body(parameters={"binary_data_size": 8}), "both 'data' and"),
        (json_body(data=None, parameters={"binary_data_size": 8}), "no Inference-Header-Content-Length"),
        (json_body() + b"\x00\x01\x02", "Inference-Header-Content-Length header is missing"),
    ],
)
def test_bad_requests_are_invalid_input_with_clear_messages(body: bytes, needle: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode(body)
    assert needle in info.value.message


def binary_body(sizes: list[int], payload: bytes, shape: list[int] | None = None) -> tuple[bytes, int]:
    inputs = [
        {"name": f"x{i}", "datatype": "FP32", "shape": shape or [size // 4], "parameters": {"binary_data_size": size}}
        for i, size in enumerate(sizes)
    ]
    header = json.dumps({"inputs": inputs}).encode()
    return header + payload, len(header)


def test_binary_sizes_must_add_up_exactly() -> None:
    body, size = binary_body([8], b"\x00" * 12)
    with pytest.raises(InvalidInput, match="add up to 8"):
        decode(body, size)
    body, size = binary_body([8, 8], b"\x00" * 12)
    with pytest.raises(InvalidInput, match="only 4 bytes remain"):
        decode(body, size)
    body, size = binary_body([8], b"\x00" * 8, shape=[3])
    with pytest.raises(InvalidInput, match="needs 12 bytes, binary_data_size says 8"):
        decode(body, size)
    good, _ = triton_request([("x", np.zeros((1, 2), np.float32), "FP32")], binary=False)
    with pytest.raises(InvalidInput, match="99999 is larger than the request body"):
        decode(good, 99999)
    with pytest.raises(InvalidInput, match="after the .*JSON header"):
        decode(good + b"junk", len(good))
    with pytest.raises(InvalidInput, match="malformed JSON in the first 10 bytes"):
        decode(good, 10)


def test_binary_bool_and_bytes_are_checked() -> None:
    header = json.dumps(
        {"inputs": [{"name": "b", "datatype": "BOOL", "shape": [2], "parameters": {"binary_data_size": 2}}]}
    ).encode()
    with pytest.raises(InvalidInput, match="BOOL bytes must be 0 or 1"):
        decode(header + b"\x01\x02", len(header))

    def bytes_body(payload: bytes, count: int) -> tuple[bytes, int]:
        head = json.dumps(
            {
                "inputs": [
                    {
                        "name": "s",
                        "datatype": "BYTES",
                        "shape": [count],
                        "parameters": {"binary_data_size": len(payload)},
                    }
                ]
            }
        ).encode()
        return head + payload, len(head)

    ok = (2).to_bytes(4, "little") + b"hi" + (0).to_bytes(4, "little")
    assert decode(*bytes_body(ok, 2)).inputs[0].data.tolist() == [b"hi", b""]
    with pytest.raises(InvalidInput, match="declares 100 bytes"):
        decode(*bytes_body((100).to_bytes(4, "little") + b"hi", 1))
    with pytest.raises(InvalidInput, match="left over"):
        decode(*bytes_body(ok + b"zz", 2))
    with pytest.raises(InvalidInput, match="need at least"):
        decode(*bytes_body(ok, 10**12))


def test_shared_memory_is_not_implemented() -> None:
    body = json_body(data=None, parameters={"shared_memory_region": "r", "shared_memory_byte_size": 8})
    with pytest.raises(NotImplementedFeature, match="shared-memory"):
        decode(body)
    body = json.dumps(
        {
            "inputs": json.loads(json_body())["inputs"],
            "outputs": [{"name": "y", "parameters": {"shared_memory_region": "r"}}],
        }
    ).encode()
    with pytest.raises(NotImplementedFeature):
        decode(body)


def test_duplicate_requested_output_is_refused() -> None:
    body = json.dumps({"inputs": json.loads(json_body())["inputs"], "outputs": [{"name": "y"}, {"name": "y"}]})
    with pytest.raises(InvalidInput, match="requested twice"):
        decode(body.encode())


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"sequence_id": 7}, "sequence_id"),
        ({"sequence_id": "session-1", "sequence_start": True}, "sequence_id, sequence_start"),
        ({"sequence_end": True}, "sequence_end"),
    ],
)
def test_sequence_controls_are_refused_not_ignored(parameters: dict[str, object], named: str) -> None:
    body = json.dumps({"inputs": json.loads(json_body())["inputs"], "parameters": parameters}).encode()
    with pytest.raises(InvalidInput, match=f"^sequence batching is not supported: the request sets {named};"):
        decode(body)


def test_no_sequence_values_tritonclient_sends_by_default_are_accepted() -> None:
    body = json.dumps(
        {"inputs": json.loads(json_body())["inputs"], "parameters": {"sequence_id": 0, "sequence_start": False}}
    ).encode()
    assert decode(body).inputs[0].name == "x"


def test_unknown_fields_and_parameters_are_ignored() -> None:
    body = json.dumps(
        {"inputs": json.loads(json_body())["inputs"], "parameters": {"custom": "x", "priority": 3}, "extra": 1}
    ).encode()
    request = decode(body)
    assert request.parameters is not None and request.parameters.priority == 3


# -- content encoding and size caps ---------------------------------------------------------------------------


def test_gzip_and_deflate_bodies_are_decompressed_first() -> None:
    body, size = triton_request([("x", np.arange(4, dtype=np.float32).reshape(1, 4), "FP32")], binary=True)
    for encoded, coding in (
        (gzip.compress(body), "gzip"),
        (zlib.compress(body), "deflate"),
        (zlib.compress(body)[2:-4], "deflate"),  # raw deflate, no zlib wrapper
        (gzip.compress(body[:10]) + gzip.compress(body[10:]), "gzip"),  # multi-member
        (body, "identity"),
    ):
        got = decode(encoded, size, coding).inputs[0].data
        np.testing.assert_array_equal(got, [[0, 1, 2, 3]])


def test_decompression_is_capped_and_strict() -> None:
    bomb = gzip.compress(b"0" * (4 * MAX))
    assert len(bomb) < MAX // 50
    with pytest.raises(PayloadTooLarge, match="exceeds the limit"):
        decode(bomb, None, "gzip")
    with pytest.raises(PayloadTooLarge):
        decode(b"x" * (MAX + 1))
    with pytest.raises(UnsupportedMediaType, match="'br'"):
        decode(b"{}", None, "br")
    with pytest.raises(InvalidInput, match="corrupt gzip"):
        decode(b"definitely not gzip", None, "gzip")
    with pytest.raises(InvalidInput, match="truncated gzip"):
        decode(gzip.compress(b'{"inputs": []}')[:-12], None, "gzip")
    with pytest.raises(InvalidInput, match="unexpected bytes after the end"):
        decode(zlib.compress(b"{}") + b"tail", None, "deflate")
    assert bytes(decompress_body(b"abc", None, max_bytes=3)) == b"abc"


# -- responses ------------------------------------------------------------------------------------------------

OUT_SPECS = (TensorSpec("logits", "FP32", (-1, 3)), TensorSpec("label", "BYTES", (-1,)))


def outputs() -> dict[str, np.ndarray]:
    return {
        "label": np.array([b"cat", "dög".encode()], dtype=object),
        "logits": np.array([[0.1, 0.7, 0.2], [0.9, 0.05, 0.05]], dtype=np.float32),
    }


def parse(body: bytes, header_length: int | None) -> InferResult:
    return InferResult.from_response_body(body, header_length=header_length)


@pytest.mark.parametrize("binary_default", [True, False])
def test_responses_parse_with_tritonclient(binary_default: bool) -> None:
    body, header_length = encode_infer_response(
        model_name="m",
        model_version="2",
        request_id="r7",
        outputs=outputs(),
        output_specs=OUT_SPECS,
        requested_outputs=None,
        binary_data_output=binary_default,
    )
    assert (header_length is not None) == binary_default
    result = parse(body, header_length)
    response = result.get_response()
    assert response["model_name"] == "m" and response["model_version"] == "2" and response["id"] == "r7"
    assert [o["name"] for o in response["outputs"]] == ["logits", "label"]  # signature order
    np.testing.assert_array_equal(result.as_numpy("logits"), outputs()["logits"])
    labels = result.as_numpy("label")
    assert [x if isinstance(x, bytes) else x.encode() for x in labels.tolist()] == [b"cat", "dög".encode()]


def test_per_output_binary_flags_and_subset() -> None:
    requested = [OutputRequest("label", False), OutputRequest("logits")]
    body, header_length = encode_infer_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs=outputs(),
        output_specs=OUT_SPECS,
        requested_outputs=requested,
        binary_data_output=True,
    )
    assert header_length is not None
    head = json.loads(body[:header_length])
    assert "id" not in head
    assert [o["name"] for o in head["outputs"]] == ["label", "logits"]
    assert head["outputs"][0]["data"] == ["cat", "dög"]
    assert head["outputs"][1]["parameters"] == {"binary_data_size": 24}
    np.testing.assert_array_equal(parse(body, header_length).as_numpy("logits"), outputs()["logits"])

    body, header_length = encode_infer_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs=outputs(),
        output_specs=OUT_SPECS,
        requested_outputs=[OutputRequest("logits", True)],
        binary_data_output=False,
    )
    head = json.loads(body[:header_length])
    assert [o["name"] for o in head["outputs"]] == ["logits"]
    assert len(body) - header_length == 24


def test_json_response_is_flat_row_major_and_plain() -> None:
    body, header_length = encode_infer_response(
        model_name="m",
        model_version="3",
        request_id="",
        outputs={"logits": outputs()["logits"]},
        output_specs=OUT_SPECS[:1],
        requested_outputs=None,
        binary_data_output=False,
    )
    assert header_length is None
    doc = json.loads(body)
    assert doc["model_version"] == "3" and doc["id"] == ""
    assert doc["outputs"][0]["shape"] == [2, 3]
    np.testing.assert_allclose(doc["outputs"][0]["data"], outputs()["logits"].reshape(-1))


def test_non_utf8_bytes_need_binary_output() -> None:
    with pytest.raises(InvalidInput, match="not UTF-8"):
        encode_infer_response(
            model_name="m",
            model_version="1",
            request_id=None,
            outputs={"label": np.array([b"\xff"], dtype=object)},
            output_specs=OUT_SPECS[1:],
            requested_outputs=None,
            binary_data_output=False,
        )


def test_classification_extension() -> None:
    out = httpclient.InferRequestedOutput("logits", binary_data=False, class_count=2)
    body, size = triton_request([("x", np.zeros((2, 3), np.float32), "FP32")], binary=False, outputs=[out])
    requested = decode(body, size).outputs
    assert requested == [OutputRequest("logits", False, 2)]
    body, header_length = encode_infer_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs=outputs(),
        output_specs=OUT_SPECS,
        requested_outputs=requested,
        binary_data_output=False,
    )
    doc = msgspec.json.decode(body)
    assert doc["outputs"][0]["datatype"] == "BYTES" and doc["outputs"][0]["shape"] == [2, 2]
    assert [s.split(":")[1] for s in doc["outputs"][0]["data"]] == ["1", "2", "0", "1"]


def test_every_datatype_round_trips_through_a_binary_response() -> None:
    for datatype, array in SAMPLES:
        body, header_length = encode_infer_response(
            model_name="m",
            model_version="1",
            request_id=None,
            outputs={"y": array},
            output_specs=(),
            requested_outputs=None,
            binary_data_output=True,
        )
        result = parse(body, header_length)
        assert result.get_output("y")["datatype"] == datatype
        got = result.as_numpy("y")
        assert got.shape == array.shape
        assert got.tolist() == array.tolist()


# -- hostile bodies (issue 12): each is the client's mistake, a 400, never a 500 ---------------------------


def test_a_zero_dim_does_not_make_a_huge_shape_valid() -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1 << 40, 1 << 40, 0], "data": []}]})
    with pytest.raises(InvalidInput, match=r"shape \[1099511627776, 1099511627776, 0\] is too large"):
        decode(body.encode())
    empty = decode(json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 0, 3], "data": []}]}).encode())
    assert empty.inputs[0].data.shape == (2, 0, 3)


@pytest.mark.parametrize("where", ["data", "parameters", "outputs"])
def test_json_nested_past_the_decoder_limit_is_invalid_input(where: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    tensor = b'{"name":"x","datatype":"FP32","shape":[1],"data":' + (deep if where == "data" else b"[1.0]") + b"}"
    extra = {"parameters": b',"parameters":{"a":' + deep + b"}", "outputs": b',"outputs":' + deep}.get(where, b"")
    with pytest.raises(InvalidInput, match="nested too deeply|invalid inference request"):
        decode(b'{"inputs":[' + tensor + b"]" + extra + b"}")


def test_many_gzip_members_are_refused_before_inflating_them_all() -> None:
    body = gzip.compress(b"{}") + gzip.compress(b"") * 200_000  # quadratic to inflate member by member
    with pytest.raises(InvalidInput, match="more than 64 members"):
        decode(body, None, "gzip", max_bytes=64 << 20)
    two = gzip.compress(b'{"inputs": [') + gzip.compress(b"]}")  # a few concatenated members stay fine
    assert decode(two, None, "gzip").inputs == []


def test_the_echoed_request_id_is_bounded() -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}
    assert decode(json.dumps({"id": "r" * 1024, "inputs": [tensor]}).encode()).id == "r" * 1024
    with pytest.raises(InvalidInput, match="length <= 1024"):
        decode(json.dumps({"id": "r" * 1025, "inputs": [tensor]}).encode())
