"""Reference servers the benchmark measures modelport against; each is started as its own process."""

from __future__ import annotations

__all__ = ()
