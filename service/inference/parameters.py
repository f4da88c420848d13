"""Request-level ``parameters`` every protocol edge applies the same way.

Triton's sequence batcher keys state on ``sequence_id`` and frames a sequence with ``sequence_start`` /
``sequence_end``. modelport's batcher is stateless, so a request that asks for a sequence is refused (400,
INVALID_ARGUMENT on gRPC) rather than answered as if each request stood alone. The values Triton itself reads
as "no sequence" (``sequence_id`` 0 or ``""``, the flags false) are accepted, since clients send them by default.
``timeout`` bounds the queue wait; ``priority`` is accepted and has no effect (one queue per engine); any other
parameter is accepted and ignored, as the Open Inference Protocol allows.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.errors import InvalidInput

__all__ = ("SEQUENCE_CONTROLS", "refuse_sequence_controls")

SEQUENCE_CONTROLS = ("sequence_id", "sequence_start", "sequence_end")
"""Triton's sequence-batcher controls (``docs/protocol/extension_sequence.md``)."""


def refuse_sequence_controls(parameters: Mapping[str, object]) -> None:
    """InvalidInput when ``parameters`` ask for sequence batching; called by each edge's decoder."""
    asked = [name for name in SEQUENCE_CONTROLS if parameters.get(name) not in (None, 0, "", False)]
    if asked:
        raise InvalidInput(
            f"sequence batching is not supported: the request sets {', '.join(asked)}; "
            "send each request on its own, without sequence parameters"
        )
