"""Property test: hostile admin bodies, sent to the real app in process, are answered below 500 (issue 12).

The admin JSON bodies are decoded by Litestar (msgspec, then pydantic with ``strict=False``) and the upload's
manifest by our streaming form reader and ``parse_manifest``: every one of those is driven here as a client drives
it, over ASGI, with a real SQLite registry behind it, so a body that passes the schemas also reaches the service
and the database. Bodies are structured-but-wrong JSON (the generator of ``tests/unit/codecs/test_hostile_properties``:
wrong types, huge and negative numbers, ``NaN``/``1e999``, lone surrogates, deep nesting, repeated keys) around
the right field names, or raw bytes, with assorted Content-Types and charsets, with and without a key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from service.errors import InvalidInput
from service.management.manifest import MANIFEST_EXAMPLE, parse_manifest
from service.settings import Settings
from tests.helpers.hostile import BIG_INTS, Lit, documents, json_values, render, sometimes
from tests.helpers.in_process import LoopClient, serve_in_process

TOKEN = "hostile-admin-token-0123456789abc"
ADMIN_BODIES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


class Call(NamedTuple):
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


@pytest.fixture(scope="module")
def admin_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopClient]:
    """The app ``create_app`` builds, on an empty SQLite registry with model ``m``."""
    config = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path_factory.mktemp("admin-hostile"),
        device="cpu",
        registry_poll_interval_s=60,
        admin_token=SecretStr(TOKEN),
        max_manifest_bytes=64 * 1024,
        max_artifact_bytes=1 << 20,
    )
    with serve_in_process(config) as app:
        created = app.request("POST", "/admin/models", b'{"name": "m"}', {"Authorization": f"Bearer {TOKEN}"})
        assert created.status_code == 201, created.text
        yield app


def send(app: LoopClient, call: Call) -> httpx.Response:
    return app.request(call.method, call.path, call.body, call.headers)


labels = sometimes(st.sampled_from(["1", "2", "m", "production", "a b", "../x", "x" * 65, "\ud800", ""]))
weights = sometimes(st.sampled_from([100, 50, 90, 10, 0, -1, 101, 2**63, 2**64, 50.0, True, "50"]))
splits = st.lists(st.fixed_dictionaries({"version": labels, "weight": weights}), max_size=4)
percent = sometimes(st.sampled_from([0, 1, 20, 100, 101, -5, 2**64, 0.5]) | st.just(Lit("NaN")))

BODY_SHAPES: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("POST", "/admin/models"): st.fixed_dictionaries(
        {"name": labels}, optional={"description": sometimes(st.sampled_from(["", "x" * 5000, "\ud800"]))}
    ),
    ("PUT", "/admin/models/m/aliases/production"): st.fixed_dictionaries({"version": labels}),
    ("PUT", "/admin/models/m/traffic"): st.fixed_dictionaries(
        {"splits": sometimes(splits)},
        optional={"shadow": sometimes(st.fixed_dictionaries({"version": labels, "percent": percent}))},
    ),
    ("POST", "/admin/keys"): st.fixed_dictionaries(
        {"name": labels},
        optional={
            "scopes": sometimes(st.lists(st.sampled_from(["read", "admin", "feedback", "root", ""]), max_size=9))
        },
    ),
    ("POST", "/admin/models/m/rollouts"): st.fixed_dictionaries(
        {"candidate": labels},
        optional={
            "steps": sometimes(st.lists(st.sampled_from([0, 5, 50, 100, 101, -1, 2**64]), max_size=5)),
            "hold_s": sometimes(st.sampled_from([0, 1, 300, -1, 2**64, 1e308]) | st.just(Lit("Infinity"))),
            "min_samples": sometimes(st.sampled_from(BIG_INTS)),
            "guards": json_values,
            "gates": json_values,
        },
    ),
    ("POST", "/v1/models/m/feedback"): st.one_of(
        st.fixed_dictionaries(
            {"request_id": sometimes(st.sampled_from(["r", "\ud800", "x" * 5000]))},
            optional={"truth": json_values, "reward": sometimes(st.floats() | st.sampled_from([Lit("NaN"), 2**64]))},
        ),
        st.fixed_dictionaries({"items": sometimes(st.lists(json_values, max_size=5))}),
    ),
}
CONTENT_TYPES = ["application/json", "", "text/plain", "application/json; charset=latin-1", "application/x-www-form"]


@st.composite
def admin_calls(draw: st.DrawFn) -> Call:
    method, path = draw(st.sampled_from(sorted(BODY_SHAPES)))
    body = draw(documents(BODY_SHAPES[method, path]))
    headers = {"Content-Type": draw(st.sampled_from(CONTENT_TYPES))}
    if draw(st.integers(0, 9)):
        headers["Authorization"] = f"Bearer {TOKEN}"
    return Call(method, path, body, headers)


def _assert_answered(reply: httpx.Response, call: Call) -> None:
    assert reply.status_code < 500, (call, reply.status_code, reply.text[:500])
    if reply.status_code >= 400:
        assert isinstance(msgspec.json.decode(reply.content)["error"], str), reply.text[:500]


@ADMIN_BODIES
@given(call=admin_calls())
def test_hostile_admin_json_bodies_are_answered_below_500(admin_app: LoopClient, call: Call) -> None:
    _assert_answered(send(admin_app, call), call)


# -- the registration manifest, through the streaming form reader ------------------------------------------

signature_tensors = st.lists(
    st.fixed_dictionaries(
        {
            "name": sometimes(st.sampled_from(["input", "x", "", "\ud800"])),
            "datatype": sometimes(st.sampled_from(["FP32", "BYTES", "fp32", "FP8"])),
            "shape": sometimes(st.lists(st.sampled_from([-1, 4, 0, -2, 2**31, 2**63, 2**64]), max_size=4)),
        }
    ),
    max_size=3,
)
manifests = st.fixed_dictionaries(
    {"backend": sometimes(st.sampled_from(["onnx", "nope", "", "../onnx"]))},
    optional={
        "version": labels,
        "architecture": sometimes(st.sampled_from(["mlp", "x" * 100])),
        "architecture_config": sometimes(st.dictionaries(st.sampled_from(["a", "not id", "1"]), json_values)),
        "signature": sometimes(
            st.fixed_dictionaries({}, optional={"inputs": signature_tensors, "outputs": signature_tensors})
        ),
        "preprocessing": json_values,
        "postprocessing": sometimes(
            st.fixed_dictionaries({"type": sometimes(st.just("classification"))}, optional={"labels": json_values})
        ),
        "card": json_values,
        "description": json_values,
    },
)


def _form(manifest: bytes, part_headers: bytes) -> tuple[bytes, str]:
    boundary = "hostileBoundary7"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="manifest"\r\n'.encode()
        + part_headers
        + b"\r\n"
        + manifest
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="artifact"; filename="a.onnx"\r\n'.encode()
        + b"Content-Type: application/octet-stream\r\n\r\nnot an onnx model\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@st.composite
def uploads(draw: st.DrawFn) -> Call:
    manifest = draw(documents(manifests, plain_share=8))
    part_headers = draw(
        st.sampled_from(
            [b"", b"", b"Content-Type: application/json\r\n", b"Content-Type: text/plain; charset=bogus\r\n"]
        )
    )
    body, content_type = _form(manifest, part_headers)
    return Call(
        "POST", "/admin/models/m/versions", body, {"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"}
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=uploads())
def test_hostile_manifests_are_answered_below_500(admin_app: LoopClient, call: Call) -> None:
    reply = send(admin_app, call)
    _assert_answered(reply, call)
    assert reply.status_code != 201  # the artifact is not a model: nothing may be registered


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.binary(max_size=64).map(lambda b: b.decode("latin-1")), manifests.map(render)))
def test_parse_manifest_only_raises_invalid_input(text: str) -> None:
    """``parse_manifest`` alone, as the upload route and the CLI call it (faster, so more examples)."""
    try:
        parse_manifest(text)
    except InvalidInput:
        return


def test_the_example_manifest_still_parses() -> None:
    """Guards the generator's premise: the field names above are the manifest's."""
    assert parse_manifest(msgspec.json.encode(MANIFEST_EXAMPLE)).backend == "pytorch"


def test_a_manifest_text_that_is_not_utf8_is_invalid_input() -> None:
    """Found by the property test: text holding lone surrogates (what Python makes of undecodable bytes in argv or
    a file read with ``surrogateescape``) raised UnicodeEncodeError out of ``parse_manifest``."""
    with pytest.raises(InvalidInput, match="not valid UTF-8"):
        parse_manifest('{"backend": "\udcff\udcfe"}')
