"""Where a request's time goes, stage by stage, for the Server-Timing header
(docs/benchmarks.md reads it through scripts/detect_bench.py)."""

import time


class Stages:
    """Wall-clock milliseconds of each stage of one call: a clock read per stage, cheap enough
    to run on every call."""

    def __init__(self, *, started: float | None = None):
        """`started`: when the first stage began (time.perf_counter()), if not now."""
        self.started = self._clock = time.perf_counter() if started is None else started
        self.ms: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        """The time since the previous mark (or the start) was spent on `stage`."""
        now = time.perf_counter()
        self.ms[stage] = round((now - self._clock) * 1000, 2)
        self._clock = now

    def total_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)


def server_timing(stages: dict[str, float]) -> str:
    """{"inference": 29.3, "decode": 5.1} -> 'inference;dur=29.3, decode;dur=5.1'."""
    return ", ".join(f"{name};dur={ms}" for name, ms in stages.items())
