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
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator

__all__ = [
    "ACCEPTED",
    "DETECTED",
    "EVENT_KINDS",
    "FAULT_HEALED",
    "FAULT_INJECTED",
    "NOTE",
    "RECONCILE",
    "REJECTED",
    "STATUS",
    "SUBMITTED",
    "TERMINAL",
    "WITNESS",
    "Event",
    "EventLine",
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
RECONCILE = "reconcile"  # data: read_ok, jobs {job_id: status} (every job the Redis under test holds), dangling
WITNESS = "witness"  # job_id; data: executions (what the witness recorded: id, started, ended, outcome)

EVENT_KINDS = (
    SUBMITTED,
    ACCEPTED,
    REJECTED,
    STATUS,
    FAULT_INJECTED,
    FAULT_HEALED,
    TERMINAL,
    DETECTED,
    NOTE,
    WITNESS,
    RECONCILE,
)


@dataclass(frozen=True)
class Event:
    """One observation; `t` is seconds since the history started."""

    t: float
    kind: str
    job_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class EventLine(BaseModel):
    """One line of history.jsonl as `History.save` writes it, checked when read back.

    `t` takes what `float()` takes and a null or empty `data` reads as `{}`, as the files
    written so far need; other fields keep their JSON type (`job_id` a string or null)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, defer_build=True)

    t: Annotated[float, BeforeValidator(float)]
    kind: str
    job_id: str | None = None
    data: Annotated[dict[str, Any], BeforeValidator(lambda v: v or {})] = {}

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        return kind


#: What a line's failed check says, by pydantic error type (`value_error`: the validator's own words).
_TYPE_REASONS = {
    "model_type": "not a JSON object",
    "string_type": "{field} must be a string",
    "dict_type": "{field} must be an object",
}


def _reasons(exc: ValidationError) -> str:
    out = []
    for e in exc.errors():
        field = ".".join(str(p) for p in e["loc"])
        if e["type"] == "missing":
            out.append(f"missing field {field!r}")
        elif e["type"] == "value_error":
            out.append(str(e["ctx"]["error"]))
        else:
            out.append(_TYPE_REASONS.get(e["type"], "{field}: {msg}").format(field=field, msg=e["msg"]))
    return "; ".join(out)


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
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
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
                    row = EventLine.model_validate(json.loads(line))
                except ValidationError as exc:
                    raise ValueError(f"{path}:{lineno}: malformed history line: {_reasons(exc)}") from exc
                except ValueError as exc:  # not JSON
                    raise ValueError(f"{path}:{lineno}: malformed history line: {exc}") from exc
                events.append(Event(row.t, row.kind, row.job_id, row.data))
        history._events = events
        return history
