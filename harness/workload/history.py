"""Append-only event history for chaos runs.

Every observation (client request, service reply, polled job status, fault)
is recorded as an `Event` so that checkers can judge a run after the fact,
from data alone, and a failed run can be saved and re-checked later.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ACCEPTED",
    "DETECTED",
    "FAULT_HEALED",
    "FAULT_INJECTED",
    "KINDS",
    "NOTE",
    "REJECTED",
    "STATUS",
    "SUBMITTED",
    "TERMINAL",
    "Event",
    "History",
]

SUBMITTED = "submitted"  # client sent a request; data: request_id
ACCEPTED = "accepted"  # job_id; data: request_id
REJECTED = "rejected"  # data: request_id, status (HTTP), error
STATUS = "status"  # job_id; data: status (RQ JobStatus or "missing"), attempts?, worker?
FAULT_INJECTED = "fault_injected"  # job_id? (targeted job); data: fault, target
FAULT_HEALED = "fault_healed"  # data: fault, target
TERMINAL = "terminal"  # job_id; data: status, attempts, result?, error?, late_completions?, executions?
DETECTED = "detected"  # job_id; data: by, action (requeued|failed)
NOTE = "note"  # data: free text

KINDS = (
    SUBMITTED,
    ACCEPTED,
    REJECTED,
    STATUS,
    FAULT_INJECTED,
    FAULT_HEALED,
    TERMINAL,
    DETECTED,
    NOTE,
)


@dataclass(frozen=True)
class Event:
    """One observation; `t` is seconds since the history started."""

    t: float
    kind: str
    job_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class History:
    """Thread-safe append-only log: workload, nemesis and pollers share one."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def record(self, kind: str, job_id: str | None = None, **data: Any) -> Event:
        """Append an event stamped with the time since start.

        Unknown kinds are rejected so typos cannot silently evade checkers.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {KINDS}")
        with self._lock:
            # Stamp under the lock so event order and time order agree.
            event = Event(self._clock() - self._start, kind, job_id, dict(data))
            self._events.append(event)
        return event

    @property
    def events(self) -> tuple[Event, ...]:
        with self._lock:
            return tuple(self._events)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def jobs(self) -> list[str]:
        """Accepted job ids, first acceptance order, without repeats."""
        seen: dict[str, None] = {}
        for e in self.events:
            if e.kind == ACCEPTED and e.job_id is not None:
                seen.setdefault(e.job_id, None)
        return list(seen)

    def save(self, path: str | Path) -> None:
        """Write JSONL, one event per line, so runs can be re-checked offline."""
        with open(path, "w", encoding="utf-8") as f:
            for e in self.events:
                row = {"t": e.t, "kind": e.kind, "job_id": e.job_id, "data": e.data}
                f.write(json.dumps(row, sort_keys=True, default=str) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a history written by `save`; malformed lines name their number."""
        history = cls()
        events: list[Event] = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise TypeError("not a JSON object")
                    kind = row["kind"]
                    if kind not in KINDS:
                        raise ValueError(f"unknown event kind {kind!r}")
                    job_id = row.get("job_id")
                    if job_id is not None and not isinstance(job_id, str):
                        raise TypeError("job_id must be a string or null")
                    data = row.get("data") or {}
                    if not isinstance(data, dict):
                        raise TypeError("data must be an object")
                    event = Event(float(row["t"]), kind, job_id, data)
                except KeyError as exc:
                    raise ValueError(f"{path}:{lineno}: malformed history line: missing field {exc}") from exc
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{path}:{lineno}: malformed history line: {exc}") from exc
                events.append(event)
        history._events = events
        return history
