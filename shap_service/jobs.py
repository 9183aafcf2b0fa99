"""The job a worker runs: validate nothing twice, explain rows, and (in tests) misbehave on cue.

`analyze` runs inside RQ's work-horse. The model is already in memory there: the worker loaded
it before forking, so a job never trains or reads a model from disk.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from typing import Any

import numpy as np

from . import explain, model
from .config import Settings

__all__ = ["JOB_FUNC", "ChaosDisabled", "analyze"]

#: What the API enqueues (a dotted path: the JSON serializer cannot carry a function object).
JOB_FUNC = "shap_service.jobs.analyze"


class ChaosDisabled(RuntimeError):
    """A request asked for a chaos hook on a worker that was not started with CHAOS_HOOKS=1."""


class _Witnessed:
    """One execution's start and end in the witness: ``exec:<job id>`` gets
    ``<witness TIME> start|end <execution id> <pid> <host> [returned|raised]`` (the format
    harness.targets.witness reads; the harness's own probe jobs write the same)."""

    _RECORD = (
        "local t = redis.call('TIME') "
        "return redis.call('RPUSH', KEYS[1], string.format('%d.%06d', t[1], t[2]) .. ' ' .. ARGV[1])"
    )

    def __init__(self, url: str) -> None:
        from redis import Redis
        from rq import get_current_job

        job = get_current_job()
        self.key = f"exec:{job.id if job is not None else 'nojob'}"
        self.execution_id = uuid.uuid4().hex
        self.where = f"{os.getpid()} {socket.gethostname()}"
        self.client = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.record = self.client.register_script(self._RECORD)

    def __enter__(self) -> str:
        self.record(keys=[self.key], args=[f"start {self.execution_id} {self.where}"])
        return self.execution_id

    def __exit__(self, exc_type: object, *_: object) -> None:
        outcome = "returned" if exc_type is None else "raised"
        try:
            self.record(keys=[self.key], args=[f"end {self.execution_id} {self.where} {outcome}"])
        finally:
            self.client.close()


def analyze(
    *,
    model_name: str,
    rows: list[list[float]],
    explainer: str = "tree",
    background_size: int = 50,
    nsamples: int = 200,
    chaos: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Explain `rows` with model `model_name`; under test (CHAOS_HOOKS with CHAOS_WITNESS_URL)
    each execution records its start and end in the harness's witness, and the result names it."""
    settings = Settings.from_env()
    args = (model_name, rows, explainer, background_size, nsamples, chaos)
    if not (settings.chaos_hooks and settings.chaos_witness_url):
        return _analyze(settings, *args)
    with _Witnessed(settings.chaos_witness_url) as execution_id:
        result = _analyze(settings, *args)
    result["execution_id"] = execution_id
    return result


def _analyze(
    settings: Settings,
    model_name: str,
    rows: list[list[float]],
    explainer: str,
    background_size: int,
    nsamples: int,
    chaos: dict[str, Any] | None,
) -> dict[str, Any]:
    if chaos:
        _misbehave(chaos, settings)
    loaded = model.load(model_name, cache_dir=settings.model_cache_path)
    t0 = time.perf_counter()
    result = explain.explain(
        loaded,
        np.asarray(rows, dtype=float),
        explainer=explainer,
        background_size=background_size,
        nsamples=nsamples,
    )
    result["compute_s"] = round(time.perf_counter() - t0, 6)
    result["worker_pid"] = os.getppid()
    if chaos and chaos.get("sleep_after_s"):
        time.sleep(float(chaos["sleep_after_s"]))
    return result


def _misbehave(chaos: dict[str, Any], settings: Settings) -> None:
    """Test-only failure modes; refused unless the worker's environment enables them."""
    if not settings.chaos_hooks:
        raise ChaosDisabled("chaos hooks are disabled on this worker (CHAOS_HOOKS is not set)")
    if chaos.get("sleep_s"):
        time.sleep(float(chaos["sleep_s"]))
    if chaos.get("alloc_mb"):
        # Touch every page so the memory is really resident (what the OOM killer counts).
        hog = bytearray(int(chaos["alloc_mb"]) * 1024 * 1024)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
        time.sleep(float(chaos.get("hold_s", 5)))
    if chaos.get("raise"):
        raise RuntimeError(str(chaos["raise"]))
    hang = chaos.get("hang")
    if hang == "python":
        while True:  # interruptible: RQ's SIGALRM timeout fires
            time.sleep(0.1)
    if hang == "c":
        # Like a C extension spinning with the GIL: SIGALRM is blocked, so RQ's in-horse
        # timeout never fires; only the worker parent can end this.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        while True:
            time.sleep(3600)
