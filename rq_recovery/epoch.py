"""Noticing a Redis that lost its data.

A Redis that restarts without persistence, or fails over to an empty replica, or is flushed,
comes back answering as if nothing happened: every job, queue and track is gone, and workers
that were running jobs find their attempts "superseded". The recovery layer keeps one key,
`<prefix>epoch`, a random id set once per dataset. Every sweeper remembers the epoch it saw; if
the key is gone or different later, the data it knew was lost. The first process to notice
writes a new epoch and counts the loss in `<prefix>data_losses` (count, last_at on Redis's clock,
lost_epoch, detected_by), which `/metrics` and `diagnose-worker` report. The epoch key has no
TTL: with an eviction policy that may evict keys without a TTL (allkeys-*), a loss can be
reported that did not happen; `noeviction` (render.yaml) or volatile-* never do that.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from .clock import LUA_NOW
from .events import emit
from .keys import PREFIX

__all__ = ["EPOCH_KEY", "LOSSES_KEY", "EpochWatch", "data_losses"]

EPOCH_KEY = f"{PREFIX}epoch"
LOSSES_KEY = f"{PREFIX}data_losses"

# KEYS: epoch, losses  ARGV: the epoch this process saw ('' if none yet), a fresh epoch, by
# Returns {the current epoch, 1 if this call recorded a loss}.
_CHECK = (
    LUA_NOW
    + """
local current = redis.call('GET', KEYS[1])
if current then return {current, 0} end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[1] == '' then return {ARGV[2], 0} end
redis.call('HINCRBY', KEYS[2], 'count', 1)
redis.call('HSET', KEYS[2], 'last_at', now, 'lost_epoch', ARGV[1], 'detected_by', ARGV[3])
return {ARGV[2], 1}
"""
)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class EpochWatch:
    """One process's memory of its Redis's dataset; `check` says when it was lost."""

    def __init__(self, connection: Any, *, by: str) -> None:
        self.connection = connection
        self.by = by
        self.seen: str | None = None
        self._check = connection.register_script(_CHECK)

    def check(self) -> bool:
        """One round trip: True when the dataset this process knew is gone (logged once)."""
        current, recorded = self._check(keys=[EPOCH_KEY, LOSSES_KEY], args=[self.seen or "", uuid.uuid4().hex, self.by])
        current = _s(current)
        lost = self.seen is not None and current != self.seen
        if lost:
            emit(
                "redis_data_lost",
                level=logging.ERROR,
                by=self.by,
                lost_epoch=self.seen,
                epoch=current,
                recorded=bool(recorded),
                why="Redis answers without the data it held (restarted without persistence, failed over, or flushed)",
            )
        self.seen = current
        return lost

    def lost(self) -> bool:
        """Without writing: is the dataset this process knew gone? (False before the first check.)"""
        if self.seen is None:
            return False
        current = self.connection.get(EPOCH_KEY)
        return current is None or _s(current) != self.seen


def data_losses(connection: Any) -> dict[str, str]:
    """What `<prefix>data_losses` holds ({} when this dataset never replaced a lost one)."""
    return {_s(k): _s(v) for k, v in connection.hgetall(LOSSES_KEY).items()}
