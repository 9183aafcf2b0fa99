"""The work-horse's note to its worker: what its attempt's commit wrote, in shared memory.

The outcome commit (`fencing`) records an attempt's facts in Redis, in RQ's own transaction,
wherever it runs: in the horse, or in the worker when the horse died. The worker still logs
each outcome (`job_finished`, ...), and learns it here instead of reading it back from Redis:
one anonymous shared page, made before the worker forks its horses, written by whichever
process committed and read by the worker once the horse has exited. A note names its attempt's
token, so the worker never logs another attempt's outcome as its own.
"""

from __future__ import annotations

import json
import mmap
from typing import Any

__all__ = ["Mailbox"]

_SIZE = 4096
_HEAD = 4  # the note's length, written last


class Mailbox:
    """One page shared by a worker and the horses it forks (MAP_SHARED survives fork)."""

    def __init__(self) -> None:
        self._page = mmap.mmap(-1, _SIZE)

    def clear(self) -> None:
        self._page[:_HEAD] = bytes(_HEAD)

    def post(self, token: str, note: dict[str, Any]) -> None:
        data = json.dumps({**note, "token": token}, default=str).encode()
        if len(data) > _SIZE - _HEAD:
            return  # cannot happen with the facts we post; never write past the page
        self._page[_HEAD : _HEAD + len(data)] = data
        self._page[:_HEAD] = len(data).to_bytes(_HEAD, "little")

    def take(self, token: str) -> dict[str, Any] | None:
        """The note for the attempt `token`, if one was posted since the last clear; clears it."""
        size = int.from_bytes(self._page[:_HEAD], "little")
        self.clear()
        if not 0 < size <= _SIZE - _HEAD:
            return None
        try:
            note = json.loads(self._page[_HEAD : _HEAD + size])
        except ValueError:
            return None
        return note if isinstance(note, dict) and note.get("token") == token else None
