"""``POST /v1/models/{name}/feedback``: outcomes for earlier predictions (key scope ``feedback``)."""

from __future__ import annotations

from litestar import Controller, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from service.api.deps import authorize, provide_experiments
from service.api.responses import errors
from service.errors import NotFound
from service.experiments.feedback import FeedbackItem
from service.experiments.wiring import Experiments
from service.schemas.feedback import FeedbackBody, FeedbackItemOut, FeedbackOut

__all__ = ("FeedbackController",)


class FeedbackController(Controller):
    path = "/v1/models"
    tags = ["experiments"]
    dependencies = {"experiments": Provide(provide_experiments, sync_to_thread=False)}
    guards = [authorize]

    @post(
        "/{model_name:str}/feedback",
        summary="Send the true label or a reward for earlier predictions (by their X-Request-ID)",
        description=(
            "Attributed to the version that served each request and to what it predicted, on any replica, "
            "for MODELPORT_FEEDBACK_WINDOW_S after the prediction. A single item whose prediction is unknown or "
            "expired is a 404; in a batch each item says how it fared. A repeat is answered 'duplicate' and "
            "counted once. Needs a key with the 'feedback' scope (admin keys have it)."
        ),
        status_code=202,
        responses=errors(400, 401, 403, 404, 501, 503),
        opt={"scope": "feedback"},
        security=[{"bearer": []}],
    )
    async def feedback(
        self,
        experiments: NamedDependency[Experiments],
        model_name: FromPath[str],
        data: JSONBody[FeedbackBody],
    ) -> FeedbackOut:
        items = [
            FeedbackItem(item.request_id, item.truth, item.truth is not None, item.reward) for item in data.all_items()
        ]
        results = await experiments.feedback.record(model_name, items)
        if data.items is None and results[0].status in ("unknown", "expired"):
            why = "is older than the feedback window" if results[0].status == "expired" else "was not found"
            raise NotFound(f"no prediction of model '{model_name}' with request id '{items[0].request_id}': it {why}")
        out = [FeedbackItemOut(r.request_id, r.status, r.model_version) for r in results]
        return FeedbackOut(model_name, sum(r.status == "recorded" for r in results), out)
