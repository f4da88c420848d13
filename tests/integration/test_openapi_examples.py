"""The request examples in the served OpenAPI document are accepted by ``serve --demo`` as they stand."""

from __future__ import annotations

import pytest

from tests.helpers.server import ServerProcess

pytestmark = pytest.mark.integration


def test_the_documented_examples_are_served_by_the_demo(demo_server: ServerProcess) -> None:
    with demo_server.admin() as client:
        schemas = client.get("/schema/openapi.json").json()["components"]["schemas"]
        (predict,) = schemas["PredictRequest"]["examples"]
        (infer,) = schemas["InferRequest"]["examples"]
        (traffic,) = schemas["TrafficBody"]["examples"]
        v1 = client.post("/v1/models/digits/predict", json=predict)
        assert v1.status_code == 200, v1.text
        assert len(v1.json()["predictions"]) == 1
        v2 = client.post("/v2/models/digits/infer", json=infer)
        assert v2.status_code == 200, v2.text
        assert v2.json()["id"] == infer["id"] and v2.json()["outputs"][0]["shape"] == [1, 10]
        split = client.put("/admin/models/digits/traffic", json=traffic)  # the demo's own 90/10: no change
        assert split.status_code == 200, split.text
