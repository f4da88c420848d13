"""``modelport serve --demo`` on an empty data dir answers a V2 infer call for ``digits`` within seconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import tritonclient.http as httpclient

from tests.helpers.server import run_server

pytestmark = pytest.mark.integration


def test_serve_demo_answers_digits(tmp_path: Path) -> None:
    pytest.importorskip("modelport_zoo")
    from modelport_zoo.demo import load_digits_784

    started = time.monotonic()
    with run_server(tmp_path / "data", args=("--demo",)) as server:
        ready_after = time.monotonic() - started
        client = httpclient.InferenceServerClient(server.base_url.removeprefix("http://"))
        _, x_test, _, y_test = load_digits_784()
        inp = httpclient.InferInput("input", [32, 784], "FP32")
        inp.set_data_from_numpy(x_test[:32])
        result = client.infer("digits", [inp])
        accuracy = float((result.as_numpy("logits").argmax(1) == y_test[:32]).mean())
        client.close()
    print(f"\nserve --demo ready after {ready_after:.1f} s; accuracy on 32 held-out digits {accuracy:.2f}")
    assert result.get_response()["model_version"] in {"1", "2"}
    assert accuracy > 0.8
    assert ready_after < 60
