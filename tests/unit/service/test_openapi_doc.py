"""The OpenAPI document: every admin operation declares the bearer key, every request body has an example, and
the examples pass the same validation the server applies (shape against the demo model: (batch, 784) FP32)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from litestar import Litestar

from service.app import create_app
from service.management.manifest import parse_manifest
from service.schemas import admin
from service.schemas.v1 import PredictRequest
from service.schemas.v2 import InferRequest
from service.settings import Settings

DEMO_FEATURES = 784


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir: Path = tmp_path_factory.mktemp("openapi-doc")
    with pytest.MonkeyPatch.context() as patch:
        # the server's logging setup caches loggers for the whole process: later capture_logs would see nothing
        patch.setattr("service.app.configure_logging", lambda *args, **kwargs: None)
        app = cast(Litestar, create_app(Settings(_env_file=None, data_dir=data_dir)).inner)  # type: ignore[call-arg]
    return app.openapi_schema.to_schema()


def _operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in openapi["paths"].items() for method, op in item.items()]


def test_every_admin_operation_declares_the_bearer_key(openapi: dict[str, Any]) -> None:
    admin_ops = [(p, m, op) for p, m, op in _operations(openapi) if p.startswith("/admin")]
    assert len(admin_ops) >= 17
    for path, method, op in admin_ops:
        assert op.get("security") == [{"bearer": []}], f"{method.upper()} {path}"
    for path, method, op in _operations(openapi):
        if path.endswith(("/feedback", "/load", "/unload")):  # outcomes and repository changes need a key
            assert op.get("security") == [{"bearer": []}], f"{method.upper()} {path}"
        elif not path.startswith("/admin"):
            assert "security" not in op, f"{method.upper()} {path} needs no key"
    assert openapi["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def _body_examples(openapi: dict[str, Any], op: dict[str, Any]) -> list[Any]:
    (media,) = op["requestBody"]["content"].values()
    schema = openapi["components"]["schemas"][media["schema"]["$ref"].rsplit("/", 1)[1]]
    if "examples" in schema:
        return list(schema["examples"])
    return [{name: prop["examples"][0] for name, prop in schema["properties"].items() if "examples" in prop}]


def test_every_request_body_has_an_example(openapi: dict[str, Any]) -> None:
    bodies = [(p, m, op) for p, m, op in _operations(openapi) if "requestBody" in op]
    assert len(bodies) >= 9
    for path, method, op in bodies:
        assert _body_examples(openapi, op) not in ([], [{}]), f"{method.upper()} {path} has no example"


def test_the_examples_pass_the_servers_validation(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    (predict,) = schemas["PredictRequest"]["examples"]
    instances = msgspec.convert(predict, PredictRequest).inputs
    assert [len(instance) for instance in instances] == [DEMO_FEATURES]
    (infer,) = schemas["InferRequest"]["examples"]
    tensor = msgspec.convert(infer, InferRequest).inputs[0]
    assert (tensor.name, tensor.datatype, tensor.shape) == ("input", "FP32", [1, DEMO_FEATURES])
    assert tensor.data is not None and len(tensor.data) == DEMO_FEATURES
    for name in ("CreateModelBody", "AliasBody", "TrafficBody", "CreateKeyBody"):
        (example,) = schemas[name]["examples"]
        getattr(admin, name).model_validate(example)
    manifest = schemas["UploadForm"]["properties"]["manifest"]["examples"][0]
    assert parse_manifest(manifest).backend == json.loads(manifest)["backend"]
