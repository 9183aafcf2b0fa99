"""A local worker: its process tree, as faults see it (a `harness.backends.base.WorkerControl`)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

from harness.backends.base import Unsupported
from harness.backends.local.processes import ManagedProcess
from harness.nemesis.proxy import TcpProxy

__all__ = ["WorkerHandle"]


@dataclass
class WorkerHandle:
    """A local worker: its process tree (a `harness.backends.base.WorkerControl`)."""

    name: str
    process: ManagedProcess
    proxy: TcpProxy | None = None  # set when StackConfig.worker_redis_via_proxy

    @property
    def pid(self) -> int:
        return self.process.pid

    def horse_pids(self) -> list[int]:
        return [p.pid for p in self.process.children()]

    def alive(self) -> bool:
        return self.process.alive()

    def exit_code(self) -> int | None:
        return self.process.proc.poll() if self.process.proc is not None else None

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        proc = self.process.proc
        if proc is not None:
            try:
                return proc.wait(timeout=timeout)
            except Exception:  # noqa: BLE001 - stop() at teardown will finish it
                pass
        return self.exit_code()

    def kill(self) -> dict[str, Any]:
        """SIGKILL the whole tree, horse included (RQ's horse calls setpgrp: a group kill misses it)."""
        pids = self.process.signal_tree(signal.SIGKILL)
        return {"pids": pids, "exit_code": self.wait_exit()}

    def kill_horse(self) -> list[int]:
        hit = []
        for pid in self.horse_pids():
            try:
                os.kill(pid, signal.SIGKILL)
                hit.append(pid)
            except ProcessLookupError:
                pass
        return hit

    def pause(self) -> dict[str, Any]:
        return {"pids": self.process.signal_tree(signal.SIGSTOP)}

    def resume(self) -> None:
        self.process.signal_tree(signal.SIGCONT)

    def terminate(self, grace_s: float = 30.0) -> dict[str, Any]:
        """SIGTERM the parent only (what a platform sends on deploy); the service's own
        SHUTDOWN_GRACE decides what happens next, and teardown kills whatever is left."""
        if self.process.proc is None:
            raise Unsupported(f"worker {self.name} was never started")
        self.process.proc.send_signal(signal.SIGTERM)
        return {"pid": self.pid}

    def partition(self) -> dict[str, Any]:
        if self.proxy is None:
            raise Unsupported(f"worker {self.name} has no proxy in front of Redis (worker_redis_via_proxy=False)")
        return {"connections_cut": self.proxy.cut()}

    def heal_partition(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()

    def log_tail(self, lines: int = 30) -> str:
        return self.process.log_tail(lines)
