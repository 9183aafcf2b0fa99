"""Processes the harness starts: labelled with the run, logged to files, killed as whole trees.

Every process gets `HARNESS_RUN_ID` and `HARNESS_OWNER_PID` in its environment and its own
session, so a later run can find the leftovers of a crashed one (`reap_leftovers`) and a
fault can kill a worker exactly as a dying container would: the whole tree, work-horse
included (RQ's horse calls setpgrp, so killing the parent's group would miss it).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psutil

from harness.wait import eventually

__all__ = [
    "OWNER_ENV",
    "RUN_ID_ENV",
    "ManagedProcess",
    "kill_tree",
    "labels_of",
    "leftovers",
    "reap_leftovers",
    "title_label",
    "wait_gone",
]

RUN_ID_ENV = "HARNESS_RUN_ID"
OWNER_ENV = "HARNESS_OWNER_PID"


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Send `sig` to `pid` and all its descendants (children first are found, then all signalled)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    hit = []
    for proc in procs:
        try:
            proc.send_signal(sig)
            hit.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return hit


class ManagedProcess:
    """One labelled child process with its log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        log_dir: Path,
        run_id: str,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.cwd = cwd
        self.env = {**env, RUN_ID_ENV: run_id, OWNER_ENV: str(os.getpid())}
        self.log_path = Path(log_dir) / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child from here on
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def signal_tree(self, sig: int) -> list[int]:
        return kill_tree(self.pid, sig) if self.proc is not None else []

    def stop(self, *, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL the whole tree; always reaps the child."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            kill_tree(self.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            self.signal_tree(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # The tree may outlive the parent (RQ's horse): kill whatever is left. Match the run id too:
        # stacks started side by side in one process (threads) all have a "redis" and an "api".
        run_id = self.env[RUN_ID_ENV]
        for proc in _labelled(
            lambda env: (
                env.get(OWNER_ENV) == str(os.getpid())
                and env.get(RUN_ID_ENV) == run_id
                and env.get("HARNESS_PROC") == self.name
            )
        ):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.signal_tree(signal.SIGKILL)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def title_label(run_id: str, name: str) -> str:
    """Label words for a process that rewrites its title, and with it /proc/PID/environ
    (redis-server, valkey-server): they go into the title instead, and are read back from it."""
    return f"{RUN_ID_ENV}={run_id} {OWNER_ENV}={os.getpid()} HARNESS_PROC={name}"


def labels_of(proc: psutil.Process) -> dict[str, str]:
    env = proc.environ()
    if RUN_ID_ENV in env:
        return env
    words = " ".join(proc.cmdline()).split()
    return dict(w.split("=", 1) for w in words if w.startswith("HARNESS_") and "=" in w)


def _labelled(match) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            labels = labels_of(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
        if RUN_ID_ENV in labels and match(labels):
            found.append(proc)
    return found


def leftovers(*, run_id: str | None = None) -> list[psutil.Process]:
    """Processes of harness runs whose owner is gone (or of `run_id`): what a run left behind."""
    me = os.getpid()

    def orphaned(env: dict[str, str]) -> bool:
        if run_id is not None:
            return env.get(RUN_ID_ENV) == run_id
        owner = int(env.get(OWNER_ENV, "0") or 0)
        return owner != me and not psutil.pid_exists(owner)

    return [p for p in _labelled(orphaned) if p.pid != me]


def reap_leftovers(*, run_id: str | None = None) -> list[int]:
    """Kill `leftovers(run_id=...)`; return their pids."""
    procs = leftovers(run_id=run_id)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=3)
    return [p.pid for p in procs]


def wait_gone(pids: Sequence[int], timeout: float = 5.0) -> bool:
    """True once none of `pids` runs (zombies count as gone), False after `timeout` s."""

    def gone() -> bool:
        return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)

    return bool(eventually(gone, timeout=timeout))
