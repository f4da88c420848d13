"""gRPC status codes, without grpcio.

The edge is our own HTTP/2 (:mod:`service.api.grpc.transport`) and sends a code as the number in ``grpc-status``;
importing grpcio for its ``grpc.StatusCode`` would load its C core (about 8-14 MB of RSS) into a server that
never uses it. Same names and values as ``grpc.StatusCode`` (``(number, description)``), so ``code.value[0]``
is the wire number of either enum, and a test may hand the edge grpcio's codes.
"""

from __future__ import annotations

import enum

__all__ = ("StatusCode",)


class StatusCode(enum.Enum):
    """The canonical codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html), as grpcio spells them."""

    OK = (0, "ok")
    CANCELLED = (1, "cancelled")
    UNKNOWN = (2, "unknown")
    INVALID_ARGUMENT = (3, "invalid argument")
    DEADLINE_EXCEEDED = (4, "deadline exceeded")
    NOT_FOUND = (5, "not found")
    ALREADY_EXISTS = (6, "already exists")
    PERMISSION_DENIED = (7, "permission denied")
    RESOURCE_EXHAUSTED = (8, "resource exhausted")
    FAILED_PRECONDITION = (9, "failed precondition")
    ABORTED = (10, "aborted")
    OUT_OF_RANGE = (11, "out of range")
    UNIMPLEMENTED = (12, "unimplemented")
    INTERNAL = (13, "internal")
    UNAVAILABLE = (14, "unavailable")
    DATA_LOSS = (15, "data loss")
    UNAUTHENTICATED = (16, "unauthenticated")
