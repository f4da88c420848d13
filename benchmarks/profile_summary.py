"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) into the frames where time goes.

    python -m benchmarks.profile_summary /tmp/profile.txt [--top 25]

Self time = samples whose innermost frame is the function; inclusive = samples with the function
anywhere on the stack (frames on nearly every stack, the process's outer frames, are left out). Line
numbers are dropped so that one function is one row. Samples of threads blocked in a wait (idle worker
threads, the event loop's poll) are counted apart, not in the tables.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ("ProfileSummary", "summarise_raw", "format_profile", "main")

_LINE_NO = re.compile(r":\d+\)$")


_IDLE_LEAVES = (
    "Condition.wait (",
    "Event.wait (",
    "Queue.get (",
    "SimpleQueue.get (",
    "select (selectors",
    "poll (",
    "_worker (concurrent/futures/thread.py)",
    # aiosqlite's worker blocks in a C-level SimpleQueue.get() that py-spy reports as this frame.
    "_connection_worker_thread (aiosqlite/core.py)",
)
"""Innermost frames of a thread that is blocked, not working (py-spy may still sample them as active)."""


@dataclass(frozen=True)
class ProfileSummary:
    """Samples split into working and idle; the tables count working samples only."""

    total: int
    idle: int
    threads: list[tuple[str, int]]
    self_time: list[tuple[str, int]]
    inclusive: list[tuple[str, int]]

    @property
    def busy(self) -> int:
        return self.total - self.idle


def _frame(raw: str) -> str:
    return _LINE_NO.sub(")", raw.strip())


def summarise_raw(text: str, *, top: int = 25) -> ProfileSummary:
    """Aggregate collapsed stacks ``[process;][thread (id): name;]f1;...;fn COUNT`` from py-spy."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = idle = 0
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        thread = "?"
        frames: list[str] = []
        for part in stack.split(";"):
            part = part.strip()
            if part.startswith("thread ("):
                thread = part.split(":", 1)[1].strip() if ":" in part else part
            elif part and not part.startswith("process "):
                frames.append(_frame(part))
        if not frames:
            continue
        total += n
        if frames[-1].startswith(_IDLE_LEAVES):
            idle += n
            continue
        threads[thread] += n
        self_counts[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    busy = total - idle
    # Frames on (nearly) every busy stack - runpy, click, uvicorn's run - say nothing: leave them out.
    below_root = [(f, n) for f, n in inclusive.most_common() if n < 0.97 * busy]
    return ProfileSummary(total, idle, threads.most_common(), self_counts.most_common(top), below_root[:top])


def format_profile(summary: ProfileSummary) -> str:
    """Markdown: busy share per thread, then top self and inclusive frames as % of busy samples."""
    busy = summary.busy or 1
    shares = ", ".join(f"{name} {100 * n / busy:.0f}%" for name, n in summary.threads)
    out = [f"{summary.total} samples, {summary.busy} busy ({shares}); {summary.idle} idle (blocked waits)", ""]
    for title, rows in (("self", summary.self_time), ("inclusive", summary.inclusive)):
        out += [f"| {title} % | frame |", "|---:|---|"]
        out += [f"| {100 * n / busy:.1f} | `{frame}` |" for frame, n in rows]
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(format_profile(summarise_raw(args.profile.read_text(errors="replace"), top=args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
