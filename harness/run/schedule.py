"""When faults strike: schedule entries `(at, fault)` and the seeded random schedule (`nemesis`).

An entry's time is seconds into the run, or `WHEN_RUNNING` ("as soon as a job runs"; every
fault waits for a running target anyway). A `RandomSchedule` draws its faults from the run's
seed, so the same seed gives the same schedule, and a soak's schedule begins with the ci one.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.defaults import NEMESIS_EVERY_S, NEMESIS_START_S
from harness.nemesis import Fault

__all__ = [
    "WHEN_RUNNING",
    "RandomSchedule",
    "ScheduleEntry",
    "ScheduleFn",
    "entry_time",
    "fresh",
    "nemesis",
]

#: Schedule entry time meaning "as soon as a job runs". Every fault waits for a running
#: target anyway; a number means "not before this many seconds into the run".
WHEN_RUNNING = "when a job runs"

ScheduleEntry = tuple[float | str, Fault]
ScheduleFn = Callable[[random.Random], Sequence[ScheduleEntry]]


def fresh(fault: Fault) -> Fault:
    """A new instance with the same settings and no run state (faults keep their target)."""
    if dataclasses.is_dataclass(fault) and not isinstance(fault, type):
        return dataclasses.replace(fault)
    return copy.copy(fault)


def entry_time(entry_at: float | str) -> float:
    """An entry's time in seconds (WHEN_RUNNING is 0); ValueError for any other text."""
    if entry_at == WHEN_RUNNING:
        return 0.0
    if isinstance(entry_at, str):
        raise ValueError(f"schedule time must be seconds or WHEN_RUNNING, got {entry_at!r}")
    return float(entry_at)


@dataclass(frozen=True)
class RandomSchedule:
    """Faults drawn from the seed: from `start_s`, one of `pool` every `every_s` (uniform).

    Called with the scenario's RNG: `count` faults (a ci run), or, given `span_s` (a soak),
    as many as start before `span_s`. The draws are the same either way, so a soak's schedule
    begins with the ci schedule and a shorter soak's is a prefix of a longer one's.
    """

    pool: tuple[Fault, ...]
    count: int
    start_s: float = NEMESIS_START_S
    every_s: tuple[float, float] = NEMESIS_EVERY_S

    def __post_init__(self) -> None:
        if not self.pool or self.count < 1:
            raise ValueError("nemesis needs a non-empty pool and count >= 1")
        low, high = self.every_s
        if not 0 < low <= high:
            raise ValueError(f"every_s must be (low, high) with 0 < low <= high, got {self.every_s}")

    def __call__(self, rng: random.Random, span_s: float | None = None) -> list[ScheduleEntry]:
        out: list[ScheduleEntry] = []
        at = self.start_s
        while (len(out) < self.count) if span_s is None else (at < span_s):
            out.append((round(at, 3), fresh(rng.choice(self.pool))))
            at += rng.uniform(*self.every_s)
        return out


def nemesis(
    pool: Sequence[Fault],
    *,
    count: int,
    start_s: float = NEMESIS_START_S,
    every_s: tuple[float, float] = NEMESIS_EVERY_S,
) -> RandomSchedule:
    """A random schedule drawn from the seed: `count` faults from `pool`, `every_s` apart
    (a soak draws them over its whole time span instead; see `RandomSchedule`)."""
    return RandomSchedule(tuple(pool), count, start_s, (float(every_s[0]), float(every_s[1])))
