"""``ModelStreamInfer`` under a client that resets its stream: the answers in flight are the call's running work.

The service runs behind a real :class:`GrpcEdge` and a raw HTTP/2 peer; ``_stream_one`` is replaced by a gated
fake (no dataplane), so the test controls when inference "finishes".
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from service.api.grpc import transport
from service.api.grpc.service import InferenceService
from service.api.grpc.transport import Call, GrpcEdge, StreamMethod
from tests.unit.api.grpc.test_transport_hostile import (
    DATA,
    END_HEADERS,
    HEADERS,
    REFUSED_STREAM,
    RST_STREAM,
    Peer,
    frame,
    message,
    request_block,
)


class _GatedService(InferenceService):
    def __init__(self) -> None:
        none = cast(Any, None)
        super().__init__(dataplane=none, repository=none, auth=none, queue_timeout_ms=0)
        self.gate = asyncio.Event()
        self.started = 0
        self.finished = 0

    async def _stream_one(self, raw: bytes, meta: Any, index: int, context: Any) -> Any:
        self.started += 1
        await self.gate.wait()
        self.finished += 1
        return raw


async def test_a_reset_stream_counts_as_running_until_its_answers_in_flight_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "_MAX_HANDLERS", 1)
    service = _GatedService()

    async def handle(requests: AsyncIterator[bytes], call: Call) -> None:
        await service.ModelStreamInfer(requests, cast(Any, call))

    edge = GrpcEdge({"/t.S/Stream": StreamMethod(handle, bytes)}, max_message_bytes=1 << 20)
    port = await edge.bind("127.0.0.1", 0, reuse_port=False)
    try:
        peer = await Peer.connect(f"127.0.0.1:{port}")
        peer.send(frame(HEADERS, END_HEADERS, 1, request_block("/t.S/Stream")))
        peer.send(frame(DATA, 0, 1, message(b"a") * 3))
        for _ in range(100):
            if service.started == 3:
                break
            await asyncio.sleep(0.01)
        assert service.started == 3
        peer.send(frame(RST_STREAM, 0, 1, struct.pack(">L", 8)))  # the client gives up on its three requests
        await asyncio.sleep(0.05)  # the handler is cancelled by now
        peer.send(frame(HEADERS, END_HEADERS, 3, request_block("/t.S/Stream")))
        frames = await peer.read(RST_STREAM)
        assert [(f.stream, f.code) for f in frames if f.kind == RST_STREAM] == [(3, REFUSED_STREAM)]
        service.gate.set()
        for _ in range(100):
            if not edge.tasks:
                break
            await asyncio.sleep(0.01)
        assert service.finished == 3  # they ran to completion, and only then did the call stop counting
        peer.send(frame(HEADERS, END_HEADERS, 5, request_block("/t.S/Stream")))
        frames = await peer.read(HEADERS, timeout=1.0)
        assert not [f for f in frames if f.kind == RST_STREAM]
        peer.close()
    finally:
        service.gate.set()
        await edge.stop(0.5)
