"""One clock for every host: Redis's.

Workers, the API and repair runs may sit on hosts whose clocks disagree by seconds. Every time
the recovery layer writes and another process compares (a heartbeat's age, when Redis restarted,
when a job was first seen between dequeue and start) is Redis's `TIME`: the scripts call it
themselves, and Python code reads `RedisClock.now()`, Redis's time carried forward on this
process's monotonic clock from one `TIME` call, so it is free to read and immune to this host's
clock being wrong or stepped. RQ's own timestamps (a job's `started_at`, a worker's heartbeat)
stay on the clocks of the hosts that wrote them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["LUA_NOW", "RedisClock", "server_time"]

#: Lua that sets `now` to Redis's time as a string of seconds with microseconds (a Lua number
#: would be truncated to an integer when a script returns it).
LUA_NOW = "local _t = redis.call('TIME')\nlocal now = _t[1] .. '.' .. string.format('%06d', tonumber(_t[2]))\n"

#: How often `RedisClock` reads `TIME` again (seconds): bounds the drift of this host's
#: monotonic clock against Redis's, and notices a Redis that moved to a host with another clock.
RESYNC_S = 60.0


def server_time(connection: Any) -> float:
    """Redis's time now (one round trip)."""
    seconds, micros = connection.time()
    return int(seconds) + int(micros) / 1e6


class RedisClock:
    """Redis's time, read once and then carried forward on `time.monotonic()`."""

    def __init__(self, connection: Any, *, resync_s: float = RESYNC_S) -> None:
        self.connection = connection
        self.resync_s = resync_s
        self._lock = threading.Lock()
        self._base: tuple[float, float] | None = None  # (Redis time, monotonic time) of one reading

    def now(self) -> float:
        base = self._base
        mono = time.monotonic()
        if base is None or mono - base[1] >= self.resync_s:
            base = self.sync()
        return base[0] + (mono - base[1])

    def sync(self) -> tuple[float, float]:
        """Read `TIME` (raises when Redis is unreachable, like any other command)."""
        before = time.monotonic()
        redis_now = server_time(self.connection)
        after = time.monotonic()
        base = (redis_now, (before + after) / 2)  # the reply left Redis about mid-way
        with self._lock:
            self._base = base
        return base

    def observe(self, redis_now: float) -> None:
        """A time a script just returned: a free resync."""
        with self._lock:
            self._base = (redis_now, time.monotonic())
