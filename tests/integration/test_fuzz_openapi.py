"""schemathesis against the service's own OpenAPI document, with and without an admin key: no 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.openapi.checks import status_code_conformance  # noqa: F401 - documented choice: not enforced

from tests.helpers.onnx_models import make_mlp_onnx
from tests.helpers.server import ADMIN_TOKEN, ServerProcess, run_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    artifact = root / "m.onnx"
    make_mlp_onnx(artifact, in_dim=4, hidden=4, out=3)
    with run_server(root / "data") as server:
        server.register_onnx("m", artifact)
        with server.admin() as admin:
            assert admin.put("/admin/models/m/aliases/production", json={"version": "1"}).status_code == 200
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ServerProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_server.base_url}/schema/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")

_SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schema.parametrize()
@_SETTINGS
def test_no_server_errors_anonymous(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error], excluded_checks=None)


@schema.parametrize()
@_SETTINGS
def test_no_server_errors_as_admin(case: schemathesis.Case) -> None:
    if case.method.upper() == "DELETE" and "keys" in case.path:
        return  # never revoke keys mid-run (the bootstrap key cannot be revoked anyway)
    case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, checks=[not_a_server_error])
