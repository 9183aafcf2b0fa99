"""When Redis (re)started, read from one `INFO server` reply: the Redis-restart hold rests on it.

Redis computes `uptime_in_seconds` as its whole-second clock minus its whole-second start time,
so a Redis started at 36.95 s reads "uptime 3" at 39.01 s, after 2.06 s. Taken as the exact
uptime, that ended the hold (one lease for a worker cut off by the restart to beat again) up to a
second early, and a live job was requeued and ran twice (tests/test_clock_offset.py, in CI).
Pure logic: a stand-in connection answers INFO with the fields Redis sends.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from rq_recovery.tracking import Tracker


class _Info:
    """Answers `INFO server` as a Redis started at `start` would at `now` (both on its clock)."""

    def __init__(self, start: float, now: float) -> None:
        self.reply = {
            "uptime_in_seconds": math.floor(now) - math.floor(start),
            "server_time_usec": round(now * 1e6),
        }

    def info(self, section: str) -> dict[str, int]:
        assert section == "server"
        return self.reply

    def register_script(self, script: str) -> None:
        """The Tracker prepares its scripts; none runs here."""


def _started(start: float, now: float) -> tuple[float, float]:
    return Tracker(_Info(start, now), "q", liveness_ttl=3, max_attempts=3).redis_started()  # type: ignore[arg-type]


def test_a_redis_up_two_seconds_is_not_taken_for_three():
    started_at, uptime = _started(start=1_000_036.95, now=1_000_039.01)
    assert uptime < 2.07, f"Redis has been up 2.06 s, not {uptime} s"
    assert started_at >= 1_000_036.95


@given(
    start=st.floats(min_value=1.7e9, max_value=1.8e9, allow_nan=False),
    up=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
)
def test_the_start_is_never_earlier_and_the_uptime_never_longer_than_they_were(start, up):
    """The hold may last up to a second longer than a lease, never a moment shorter."""
    started_at, uptime = _started(start, start + up)
    assert started_at >= start - 1e-6 and uptime <= up + 1e-6
    assert uptime > up - 1 - 1e-6  # and Redis's whole seconds cost at most one second
