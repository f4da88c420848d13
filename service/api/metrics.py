"""``GET /metrics``: Prometheus text exposition of this worker's metrics."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State

from service.observability.metrics import CONTENT_TYPE_LATEST
from service.runtime import Runtime

__all__ = ("metrics",)


@get("/metrics", summary="Prometheus metrics", tags=["observability"], include_in_schema=True, sync_to_thread=False)
def metrics(state: State) -> Response[bytes]:
    runtime: Runtime = state.runtime
    for served in runtime.pool.served_versions():
        runtime.metrics.queue_depth.labels(model=served.record.model_name, version=served.record.version).set(
            served.batcher.queue_depth
        )
    return Response(content=runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
