"""``POST /v1/models/{name}/feedback``: one outcome, or a batch of them, for earlier predictions."""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from service.schemas.fields import body_config

__all__ = ("FeedbackBody", "FeedbackItemBody", "FeedbackItemOut", "FeedbackOut")

_MAX_ITEMS = 1000
_MAX_INSTANCES = 256

Label = StrictStr | StrictInt | StrictFloat | StrictBool
Truth = Annotated[str, Field(max_length=256)] | StrictInt | StrictFloat | StrictBool | list[Label | None]


def _number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Reward = Annotated[float, BeforeValidator(_number)]
"""A finite number and nothing that converts to one (no ``"1"`` or ``true``; Litestar validates loosely)."""


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class FeedbackItemBody(BaseModel):
    """The outcome of one earlier prediction: its true label or value, a reward, or both."""

    model_config = body_config({"request_id": "5f0c6e2a9b1d4e7a00000001", "truth": 7})

    request_id: Annotated[StrictStr, Field(min_length=1, max_length=1024)]
    """The ``X-Request-ID`` the prediction's response carried."""
    truth: Truth | None = None
    """The true label (or value) of the call's one instance, or a list with one per instance."""
    reward: Reward | None = None
    """Any finite number the application scores the prediction with (higher is better)."""

    @field_validator("truth")
    @classmethod
    def _truth(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(value) > _MAX_INSTANCES:
                raise ValueError(f"at most {_MAX_INSTANCES} instances per truth list")
            for item in value:
                _finite(item)
                if isinstance(item, str) and len(item) > 256:
                    raise ValueError("labels are at most 256 characters")
            return value
        return _finite(value)

    @model_validator(mode="after")
    def _something(self) -> FeedbackItemBody:
        if self.truth is None and self.reward is None:
            raise ValueError("send 'truth', 'reward' or both")
        return self


class FeedbackBody(BaseModel):
    """One item (``request_id`` + ``truth`` / ``reward``) or ``{"items": [...]}`` (at most 1000)."""

    model_config = body_config({"request_id": "5f0c6e2a9b1d4e7a00000001", "truth": 7})

    request_id: Annotated[StrictStr, Field(min_length=1, max_length=1024)] | None = None
    truth: Truth | None = None
    reward: Reward | None = None
    _check_truth = field_validator("truth")(FeedbackItemBody._truth.__func__)  # type: ignore[attr-defined]
    items: Annotated[list[FeedbackItemBody], Field(min_length=1, max_length=_MAX_ITEMS)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> FeedbackBody:
        single = self.request_id is not None or self.truth is not None or self.reward is not None
        if self.items is not None and single:
            raise ValueError("send either one item (request_id, truth/reward) or 'items', not both")
        if self.items is None and (self.request_id is None or (self.truth is None and self.reward is None)):
            raise ValueError("send 'request_id' with 'truth' and/or 'reward', or 'items'")
        return self

    def all_items(self) -> list[FeedbackItemBody]:
        if self.items is not None:
            return list(self.items)
        return [FeedbackItemBody(request_id=self.request_id or "", truth=self.truth, reward=self.reward)]


class FeedbackItemOut(msgspec.Struct, frozen=True):
    request_id: str
    status: str
    """``recorded``; ``duplicate`` (this prediction already had its outcome: not counted again); ``unknown``
    (no prediction with this id was logged for this model); ``expired`` (older than the feedback window)."""
    model_version: str | None


class FeedbackOut(msgspec.Struct, frozen=True):
    model_name: str
    recorded: int
    results: list[FeedbackItemOut]
