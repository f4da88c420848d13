"""Wire shapes of the simple JSON predict endpoint (``/v1/models/{name}[/versions/{version}]/predict``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

__all__ = ("PredictRequest", "PredictResponse")


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A batch of instances; each instance is the model input without the batch dimension.

    A single-input model takes the instance itself (``[[0.1, ...], [0.3, ...]]`` for ``(-1, 784)``); a model
    with several inputs takes one object per instance, keyed by input name.
    """

    inputs: Annotated[
        list[Any],
        Meta(min_length=1, description="Instances, each shaped like the model input without its batch dimension."),
    ]


class PredictResponse(msgspec.Struct, frozen=True):
    """Predictions for every instance, in order, with the version that served them and where time went."""

    model_name: str
    model_version: Annotated[str, Meta(description="The version that served the request.", examples=["2"])]
    predictions: Annotated[
        list[Any],
        Meta(
            description=(
                "Per instance: the class label (classification), else the raw output row "
                "(an object keyed by output name when the model has several outputs)."
            ),
            examples=[["7"]],
        ),
    ]
    confidence_scores: Annotated[
        list[float] | None,
        Meta(description="Per instance: probability of the predicted class (classification only).", examples=[[0.98]]),
    ]
    inference_time_ms: Annotated[float, Meta(description="Queue wait plus the batched backend call.")]
    preprocessing_time_ms: Annotated[float, Meta(description="Validation and declared preprocessing.")]
    postprocessing_time_ms: Annotated[float, Meta(description="Declared postprocessing and response building.")]
