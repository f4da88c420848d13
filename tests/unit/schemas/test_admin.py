"""Admin request bodies: the registry's rules at the edge, and complete schemas with examples in OpenAPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from litestar import Litestar
from pydantic import BaseModel, ValidationError

from service.app import create_app
from service.schemas.admin import AliasBody, CreateKeyBody, CreateModelBody, SplitBody, TrafficBody
from service.settings import Settings

BODIES: tuple[type[BaseModel], ...] = (AliasBody, CreateKeyBody, CreateModelBody, SplitBody, TrafficBody)


def _errors(model: type[BaseModel], data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data, strict=False)  # as Litestar calls it: field-level strictness is off
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]


def _split(*arms: tuple[Any, Any]) -> dict[str, Any]:
    return {"splits": [{"version": v, "weight": w} for v, w in arms]}


def test_a_good_split() -> None:
    body = TrafficBody.model_validate(_split(("1", 90), ("2", 10)))
    assert [(s.version, s.weight) for s in body.splits] == [("1", 90), ("2", 10)]
    assert TrafficBody.model_validate(_split(("only", 100))).splits[0].weight == 100


@pytest.mark.parametrize(
    ("data", "where", "needle"),
    [
        (_split(("1", 90), ("2", 20)), "splits", "split weights must sum to 100, got 110"),
        (_split(("1", 50), ("1", 50)), "splits", "version '1' appears twice in the split"),
        (_split(("1", 0), ("2", 100)), "splits.0.weight", "greater than or equal to 1"),
        (_split(("1", 101)), "splits.0.weight", "less than or equal to 100"),
        (_split(("1", 100.0)), "splits.0.weight", "expected an integer, got float"),
        (_split(("1", True)), "splits.0.weight", "expected an integer, got bool"),
        (_split(("1", "100")), "splits.0.weight", "expected an integer, got str"),
        (_split(("../1", 100)), "splits.0.version", "invalid version label '../1'"),
        ({"splits": []}, "splits", "at least 1 item"),
        (_split(*((str(i), 5) for i in range(20))), "splits", "at most 16 items"),
        ({"splits": [{"version": "1", "weight": 100, "shadow": True}]}, "splits.0.shadow", "Extra inputs"),
        ({"splits": [], "note": "x"}, "note", "Extra inputs"),
    ],
)
def test_bad_splits_name_the_problem(data: dict[str, Any], where: str, needle: str) -> None:
    errors = _errors(TrafficBody, data)
    assert any(loc == where and needle in msg for loc, msg in errors), errors


@pytest.mark.parametrize(
    ("model", "data", "where", "needle"),
    [
        (AliasBody, {"version": "a b"}, "version", "invalid version label 'a b'"),
        (AliasBody, {"version": 2}, "version", "valid string"),
        (AliasBody, {}, "version", "Field required"),
        (AliasBody, {"version": "2", "alias": "x"}, "alias", "Extra inputs"),
        (CreateModelBody, {"name": "has/slash"}, "name", "invalid model name 'has/slash'"),
        (CreateModelBody, {"name": "m", "description": "x" * 4097}, "description", "at most 4096"),
        (CreateKeyBody, {"name": "k", "scopes": ["root"]}, "scopes", "scopes must be a non-empty subset"),
        (CreateKeyBody, {"name": "k", "scopes": []}, "scopes", "at least 1 item"),
        (CreateKeyBody, {"name": "k", "scopes": "read"}, "scopes", "valid list"),
        (CreateKeyBody, {"name": " k"}, "name", "invalid alias"),
    ],
)
def test_bad_bodies_name_the_field(model: type[BaseModel], data: Any, where: str, needle: str) -> None:
    errors = _errors(model, data)
    assert any(loc == where and needle in msg for loc, msg in errors), errors


def test_key_scopes_default_and_normalise() -> None:
    assert CreateKeyBody.model_validate({"name": "k"}).scopes == ["read"]
    assert CreateKeyBody.model_validate({"name": "k", "scopes": ["read", "admin", "read"]}).scopes == ["admin", "read"]


@pytest.mark.parametrize("model", BODIES, ids=lambda m: m.__name__)
def test_each_body_example_is_valid(model: type[BaseModel]) -> None:
    (example,) = model.model_json_schema()["examples"]
    model.model_validate(example)


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    app = cast(Litestar, create_app(Settings(data_dir=data_dir)).inner)
    return app.openapi_schema.to_schema()


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/admin/models", "post", "CreateModelBody"),
        ("/admin/keys", "post", "CreateKeyBody"),
        ("/admin/models/{model_name}/aliases/{alias}", "put", "AliasBody"),
        ("/admin/models/{model_name}/traffic", "put", "TrafficBody"),
    ],
)
def test_openapi_lists_each_body_with_its_schema_and_example(
    openapi: dict[str, Any], path: str, method: str, body: str
) -> None:
    request = openapi["paths"][path][method]["requestBody"]
    assert request["required"] is True
    assert request["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{body}"}
    schema = openapi["components"]["schemas"][body]
    assert schema["type"] == "object" and schema["properties"] and schema["required"]
    (example,) = schema["examples"]
    assert set(example) <= set(schema["properties"])


def test_openapi_carries_the_constraints(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    split = schemas["SplitBody"]["properties"]
    assert (split["weight"]["minimum"], split["weight"]["maximum"]) == (1, 100)
    assert split["version"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
    assert split["version"]["examples"] == ["2"]  # shared field types do not repeat their examples per model
    assert schemas["AliasBody"]["properties"]["version"]["examples"] == ["2"]
    assert schemas["TrafficBody"]["properties"]["splits"]["items"] == {"$ref": "#/components/schemas/SplitBody"}
    assert schemas["CreateKeyBody"]["properties"]["scopes"]["items"]["enum"] == ["admin", "feedback", "read"]
    assert schemas["TrafficOut"]["properties"]["splits"]["items"] == {"$ref": "#/components/schemas/SplitItem"}
