"""``modelport serve --demo`` on an empty data dir answers a V2 infer call for ``digits`` within seconds.

The server is the session's ``demo_server`` (tests/conftest.py: started on an empty data dir with ``--demo``, the
start-up time recorded): training the demo is most of a start, so it is done once for this test, the browser
tests and the OpenAPI examples."""

from __future__ import annotations

import pytest
import tritonclient.http as httpclient

from tests.helpers.server import ServerProcess

pytestmark = pytest.mark.integration


def test_serve_demo_answers_digits(demo_server: ServerProcess) -> None:
    from modelport_zoo.demo import load_digits_784  # demo_server skips where modelport_zoo is missing

    client = httpclient.InferenceServerClient(demo_server.base_url.removeprefix("http://"))
    _, x_test, _, y_test = load_digits_784()
    inp = httpclient.InferInput("input", [32, 784], "FP32")
    inp.set_data_from_numpy(x_test[:32])
    result = client.infer("digits", [inp])
    accuracy = float((result.as_numpy("logits").argmax(1) == y_test[:32]).mean())
    client.close()
    ready_after = demo_server.ready_after
    print(f"\nserve --demo ready after {ready_after:.1f} s; accuracy on 32 held-out digits {accuracy:.2f}")
    assert result.get_response()["model_version"] in {"1", "2"}
    assert accuracy > 0.8
    assert ready_after < 60
