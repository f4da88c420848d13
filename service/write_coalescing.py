"""One socket write per HTTP response instead of two.

uvicorn writes a response's status line and headers when the app sends ``http.response.start`` and the body on
``http.response.body``: two ``send`` calls, two TCP segments, two wake-ups of the client, for every small V2
reply. On one core each write costs about as much as decoding a small request (py-spy: uvicorn's ``send`` was
12-16 % of a worker's busy samples). :class:`CoalescingTransport` sits between uvicorn's protocol and the socket
and holds what is written during one event-loop iteration, then sends it with one ``writelines`` (one ``writev``
in uvloop) at the end of that iteration, or at once when the connection closes. Nothing waits longer than the
current iteration, so a streamed response's head still leaves before its body does when the app awaits
between them; and once :data:`FLUSH_BYTES` are held they go at once, so a large or tight-looped streamed body is
never piled up here (the wrapped transport's flow control sees it as before).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ("FLUSH_BYTES", "CoalescingTransport")

FLUSH_BYTES = 64 * 1024
"""Held bytes past which a write is sent at once (a large reply gains nothing from waiting)."""


class CoalescingTransport:
    """A stream transport's write side, batched per loop iteration; everything else is the wrapped one's."""

    __slots__ = ("_transport", "_loop", "_held", "_held_bytes")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes | bytearray | memoryview] = []
        self._held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if not held:
            self._loop.call_soon(self.flush)
            self._held_bytes = 0
        held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_BYTES:
            self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is held (dropped if the connection is already closing: nobody can read it)."""
        held = self._held
        if not held:
            return
        self._held = []
        transport = self._transport
        if transport.is_closing():
            return
        if len(held) == 1:
            transport.write(held[0])
        else:
            transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + (self._held_bytes if self._held else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
