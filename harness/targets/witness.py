"""The witness: a Redis the harness owns, beside the stack, where probe executions record themselves.

No fault touches it (it is not the Redis under test, no proxy sits in front of it, nothing kills
it), so what it holds is the harness's own evidence of what ran: every execution's start and end,
with one clock (the witness's `TIME`) for all of them. The checkers count executions and judge
fencing from it, never from the service's account of itself.

    with Witness(log_dir, run_id="r1") as witness:
        ...                                    # probes get witness.url in their arguments
        witness.executions()                   # {job_id: [Execution, ...]} in start order
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from redis import Redis

from harness.backends.config import free_port
from harness.backends.local.processes import ManagedProcess, title_label
from harness.backends.local.redis_server import find_redis_server
from harness.backends.readiness import redis_pings
from harness.text import text
from harness.wait import wait_until

__all__ = ["Execution", "Witness", "parse_entries"]


@dataclass(frozen=True)
class Execution:
    """One run of a probe: when it started and ended (witness seconds), and how it ended."""

    execution_id: str
    started: float
    pid: int
    host: str
    ended: float | None = None
    outcome: str | None = None  # "returned" | "raised" | None (never ended: killed, frozen, hung)


def parse_entries(entries: Sequence[bytes | str]) -> list[Execution]:
    """The executions one job's witness list records, in start order (malformed entries skipped)."""
    starts: dict[str, Execution] = {}
    ends: dict[str, tuple[float, str | None]] = {}
    for entry in entries:
        words = (text(entry) or "").split()
        if len(words) < 5:
            continue
        try:
            t = float(words[0])
            pid = int(words[3])
        except ValueError:
            continue
        event, eid, host = words[1], words[2], words[4]
        if event == "start":
            starts.setdefault(eid, Execution(eid, t, pid, host))
        elif event == "end":
            ends[eid] = (t, words[5] if len(words) > 5 else None)
    out = []
    for eid, ex in starts.items():
        if eid in ends:
            ex = Execution(eid, ex.started, ex.pid, ex.host, ended=ends[eid][0], outcome=ends[eid][1])
        out.append(ex)
    return sorted(out, key=lambda e: e.started)


class Witness:
    """A redis-server of the harness's own on loopback, labelled with the run id."""

    def __init__(self, log_dir: Path, *, run_id: str) -> None:
        self.log_dir = log_dir
        self.run_id = run_id
        self.port = free_port()
        self.proc: ManagedProcess | None = None
        self._client: Redis | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        argv = [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.log_dir),
            "--proc-title-template",
            "{title} {listen-addr} " + title_label(self.run_id, "witness"),
        ]
        self.proc = ManagedProcess("witness", argv, env={}, log_dir=self.log_dir, run_id=self.run_id).start()
        wait_until(
            redis_pings(self.url), what="witness", timeout=10, log_tail=self.proc.log_tail, alive=self.proc.alive
        )
        return self

    @property
    def client(self) -> Redis:
        if self._client is None:
            self._client = Redis.from_url(self.url, decode_responses=True, socket_timeout=5)
        return self._client

    def executions(self) -> dict[str, list[Execution]]:
        """Every job the witness saw, with its executions in start order."""
        out = {}
        for key in self.client.scan_iter("exec:*", count=1000):
            out[key.removeprefix("exec:")] = parse_entries(self.client.lrange(key, 0, -1))
        return out

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.proc is not None:
            self.proc.stop(timeout=3)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
