"""The one error hierarchy: every error class raised on purpose declares the status it maps to, and the reply
built from it carries that status, its message (unless it is our own fault) and the headers it implies."""

from __future__ import annotations

import importlib
import json
import pkgutil

import pytest

import registry_db
import service
from registry_db import errors as registry_errors
from service import errors as service_errors
from service.errors import ModelportError, status_of
from service.exception_handlers import error_reply


def _import_everything() -> None:
    """Import every module of both packages, so that every error class defined anywhere is seen."""
    for package in (service, registry_db):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".migrations." not in module.name and not module.name.endswith("__main__"):
                importlib.import_module(module.name)


def _subclasses(root: type[ModelportError]) -> list[type[ModelportError]]:
    seen: list[type[ModelportError]] = []
    stack = [root]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen and sub.__module__.split(".")[0] in ("service", "registry_db"):
                seen.append(sub)
                stack.append(sub)
    return seen


_import_everything()
CLASSES = _subclasses(ModelportError)


def test_the_hierarchy_is_found_and_has_one_class_per_kind() -> None:
    assert len(CLASSES) >= 25
    assert service_errors.NotFound is registry_errors.NotFound
    assert service_errors.Conflict is registry_errors.Conflict
    assert service_errors.InvalidInput is registry_errors.InvalidInput
    assert issubclass(registry_errors.EmptyArtifact, service_errors.InvalidInput)  # an empty upload is a 400


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_error_class_declares_its_status(cls: type[ModelportError]) -> None:
    assert "status" in vars(cls), f"{cls.__name__} must say which status it maps to, not inherit one silently"
    assert 400 <= cls.status <= 599
    exc = cls.__new__(cls)
    ModelportError.__init__(exc, f"{cls.__name__} happened")
    assert status_of(exc) == cls.status
    status, body, headers = error_reply(exc, "req-1")
    assert status == cls.status
    message = json.loads(body)["error"]
    if status == 500:
        assert message == "internal server error (request id req-1)"
    else:
        assert message == f"{cls.__name__} happened"
    assert ("Retry-After" in headers) == (status == 503)
    assert ("WWW-Authenticate" in headers) == (status == 401)


def test_anything_else_is_our_fault() -> None:
    status, body, _ = error_reply(KeyError("secret internals"), "req-2")
    assert status == 500 and b"secret" not in body and b"req-2" in body
