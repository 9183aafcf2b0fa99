"""Clients that submit real SHAP requests and watch them to the end, recording a `History`.

    workload = Workload(jobs=8, concurrency=2, mix={"light": 1, "slow": 1})
    run = WorkloadRun(workload, api_url=stack.api_url, history=history, seed=7, deadline=t0 + 20)
    run.start(); run.join(); run.final_pass()

Each of `concurrency` client threads is closed-loop, as a Jepsen client: it submits one job
(`POST /analyze`, real rows from scikit-learn's diabetes data), polls it (`GET /jobs/{id}`)
until it is finished or failed, then takes the next. Submissions survive an API crash or a
Redis outage: connection errors and 5xx answers are retried with backoff until the deadline.
Everything observed goes into the History: `submitted` / `accepted` / `rejected` per request,
a `status` event whenever (status, attempts, worker) changes, one `terminal` event per job, and
after the run (faults healed) a final pass records every job's final view once more.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import requests

from harness.defaults import JOB_KINDS, LONG_KINDS, MISSING, TERMINAL_STATUSES
from harness.workload.history import ACCEPTED, NOTE, REJECTED, STATUS, SUBMITTED, TERMINAL, History

__all__ = ["KINDS", "LONG_KINDS", "JobSpec", "Workload", "WorkloadRun", "diabetes_rows"]

#: What a job can be asked to do. light: TreeExplainer on 5 rows (milliseconds); heavy:
#: KernelExplainer on 3 rows (nsamples 200); slow: sleeps `slow_s` first (a long job to break
#: mid-run); hang: never returns (chaos hang); hungry: allocates `alloc_mb` and holds it `hold_s`.
KINDS = JOB_KINDS
#: Kinds that stay running long enough for a fault to hit them mid-job.

_rows_cache: list[list[float]] | None = None
_rows_lock = threading.Lock()


def diabetes_rows() -> list[list[float]]:
    """The 442 x 10 rows of scikit-learn's diabetes data (ships with sklearn, no network)."""
    global _rows_cache
    with _rows_lock:
        if _rows_cache is None:
            from sklearn.datasets import load_diabetes

            _rows_cache = [[float(v) for v in row] for row in load_diabetes().data]
        return _rows_cache


@dataclass(frozen=True)
class JobSpec:
    """One planned request: which kind, and the exact body sent."""

    index: int
    kind: str
    request_id: str
    body: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What the clients do; plain data, deterministic for a seed (see `plan`)."""

    jobs: int = 10
    concurrency: int = 2
    rate: float | None = None  # submissions per second over all clients; None = as fast as they go
    mix: Mapping[str, float] = field(default_factory=lambda: {"light": 1.0})
    slow_s: float = 3.0
    alloc_mb: int = 300
    hold_s: float = 3.0
    hang: str = "python"  # "python" (interruptible) | "c" (ignores SIGALRM)
    poll_interval: float = 0.1
    missing_grace_s: float = 5.0  # a job reported missing this long is given up on

    def __post_init__(self) -> None:
        unknown = sorted(set(self.mix) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown job kinds {unknown}; expected some of {KINDS}")
        if not self.mix or any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError(f"mix needs positive weights, got {dict(self.mix)}")
        if self.jobs < 0 or self.concurrency < 1:
            raise ValueError("jobs must be >= 0 and concurrency >= 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0 (or None)")
        if self.hang not in ("python", "c"):
            raise ValueError("hang must be 'python' or 'c'")

    def scaled(self, factor: float) -> Workload:
        """The same workload with `factor` times the jobs (profiles: soak runs many more)."""
        return replace(self, jobs=max(1, math.ceil(self.jobs * factor)) if self.jobs else 0)

    def kinds_plan(self, rng: random.Random) -> list[str]:
        """Kinds in proportion to `mix` (largest remainder; every weighted kind at least once
        when there are enough jobs), in an order shuffled by `rng`."""
        kinds = [k for k in KINDS if self.mix.get(k, 0) > 0]
        total = sum(self.mix[k] for k in kinds)
        exact = {k: self.jobs * self.mix[k] / total for k in kinds}
        counts = {k: int(exact[k]) for k in kinds}
        if self.jobs >= len(kinds):
            for k in kinds:
                counts[k] = max(counts[k], 1)
        while sum(counts.values()) < self.jobs:
            k = max(kinds, key=lambda k: (exact[k] - counts[k], -kinds.index(k)))
            counts[k] += 1
        while sum(counts.values()) > self.jobs:
            k = max(kinds, key=lambda k: (counts[k] - exact[k], -kinds.index(k)))
            counts[k] -= 1
        plan = [k for k in kinds for _ in range(counts[k])]
        rng.shuffle(plan)
        return plan

    def body(self, kind: str, rows: list[list[float]]) -> dict[str, Any]:
        if kind == "heavy":
            return {"model": "diabetes", "rows": rows[:3], "explainer": "kernel", "nsamples": 200}
        body: dict[str, Any] = {"model": "diabetes", "rows": rows[:5], "explainer": "tree"}
        if kind == "slow":
            body["chaos"] = {"sleep_s": self.slow_s}
        elif kind == "hang":
            body["chaos"] = {"hang": self.hang}
        elif kind == "hungry":
            body["chaos"] = {"alloc_mb": self.alloc_mb, "hold_s": self.hold_s}
        return body

    def plan(self, seed: int | str) -> list[JobSpec]:
        """Every request this workload sends, the same for the same seed."""
        rng = random.Random(f"workload:{seed}")
        data = diabetes_rows()
        specs = []
        for i, kind in enumerate(self.kinds_plan(rng)):
            rows = [list(data[rng.randrange(len(data))]) for _ in range(5)]
            specs.append(JobSpec(i, kind, f"r{i:04d}-{kind}", self.body(kind, rows)))
        return specs

    def longest_job_s(self, env: Mapping[str, str] | None = None) -> float:
        """How long one clean run of the slowest kind takes (bound slack is built on it)."""
        env = env or {}
        longest = 0.5  # light / heavy: well under a second
        if self.mix.get("slow", 0) > 0:
            longest = max(longest, self.slow_s)
        if self.mix.get("hungry", 0) > 0:
            longest = max(longest, self.hold_s + 1.0)
        if self.mix.get("hang", 0) > 0:
            timeout = float(env.get("JOB_TIMEOUT", 180))
            grace = float(env.get("HARD_KILL_GRACE", 10)) if self.hang == "c" else 0.0
            attempts = int(env.get("MAX_ATTEMPTS", 3))
            longest = max(longest, (timeout + grace + 0.5) * attempts)
        return longest


def _view_key(view: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return view.get("status"), view.get("attempts"), view.get("worker")


class WorkloadRun:
    """One execution of a `Workload` against an API, until done or `deadline` (monotonic)."""

    def __init__(
        self,
        workload: Workload,
        *,
        api_url: str,
        history: History,
        seed: int | str,
        deadline: float,
        submit_until: float | None = None,
        request_timeout: float = 10.0,
    ) -> None:
        """`deadline` (monotonic): the clients stop, watching included; `submit_until`: no new
        submission after this (a soak's time cap), the jobs in flight are still watched."""
        self.workload = workload
        self.api_url = api_url.rstrip("/")
        self.history = history
        self.deadline = deadline
        self.submit_until = submit_until
        self.request_timeout = request_timeout
        self.specs = workload.plan(seed)
        self._next = 0
        self._next_at: float | None = None
        self._lock = threading.Lock()
        self._kinds: dict[str, str] = {}
        self._terminal: dict[str, dict[str, Any]] = {}
        self._threads: list[threading.Thread] = []
        self.stop_event = threading.Event()
        #: Set once no more jobs will be submitted (all taken, the time cap passed, or stopped).
        self.submissions_over = threading.Event()
        self.errors: list[str] = []

    # -- what faults and the runner need to know -------------------------------------------

    def kind_of(self, job_id: str) -> str | None:
        with self._lock:
            return self._kinds.get(job_id)

    def accepted(self) -> list[str]:
        with self._lock:
            return list(self._kinds)

    def done(self) -> bool:
        return all(not t.is_alive() for t in self._threads)

    # -- running ----------------------------------------------------------------------------

    def start(self) -> WorkloadRun:
        self._next_at = time.monotonic()
        for i in range(self.workload.concurrency):
            t = threading.Thread(target=self._client, args=(i,), name=f"client-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the clients; True when all ended (done or past the deadline)."""
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if end is None else max(0.0, end - time.monotonic()))
        return self.done()

    def stop(self) -> None:
        self.submissions_over.set()
        self.stop_event.set()
        self.join(timeout=self.request_timeout + 2)

    def _live(self) -> bool:
        return not self.stop_event.is_set() and time.monotonic() < self.deadline

    def _past_submit_cap(self) -> bool:
        return self.submit_until is not None and time.monotonic() >= self.submit_until

    def _take(self) -> JobSpec | None:
        with self._lock:
            if self._next >= len(self.specs) or self._past_submit_cap():
                self.submissions_over.set()
                return None
            spec = self.specs[self._next]
            self._next += 1
            if self._next >= len(self.specs):
                self.submissions_over.set()
            wait = 0.0
            if self.workload.rate is not None and self._next_at is not None:
                now = time.monotonic()
                wait = max(0.0, self._next_at - now)
                self._next_at = max(now, self._next_at) + 1.0 / self.workload.rate
        if wait:
            self.stop_event.wait(wait)
            if self._past_submit_cap():
                self.submissions_over.set()
                return None
        return spec

    def _client(self, index: int) -> None:
        session = requests.Session()
        try:
            while self._live():
                spec = self._take()
                if spec is None or not self._live():
                    return
                job_id = self._submit(session, spec)
                if job_id is not None:
                    self._watch(session, job_id)
        except Exception as exc:  # noqa: BLE001 - a client bug is recorded, never silently ok
            msg = f"client-{index} crashed: {type(exc).__name__}: {exc}"
            self.errors.append(msg)
            self.history.record(NOTE, text=msg)
        finally:
            session.close()

    def _submit(self, session: requests.Session, spec: JobSpec) -> str | None:
        backoff = 0.1
        attempt = 0
        last_error = ""
        while self._live():
            attempt += 1
            self.history.record(SUBMITTED, request_id=spec.request_id, job_kind=spec.kind, attempt=attempt)
            try:
                r = session.post(f"{self.api_url}/analyze", json=spec.body, timeout=self.request_timeout)
            except requests.RequestException as exc:  # API down (crash) or unreachable: retry
                last_error = f"{type(exc).__name__}"
                r = None
            if r is not None:
                if r.status_code == 202:
                    job_id = str(r.json()["job_id"])
                    with self._lock:
                        self._kinds[job_id] = spec.kind
                    self.history.record(ACCEPTED, job_id, request_id=spec.request_id, job_kind=spec.kind)
                    return job_id
                if r.status_code < 500:  # the request itself is wrong: no point retrying
                    self.history.record(
                        REJECTED, request_id=spec.request_id, status=r.status_code, error=_error_text(r)
                    )
                    return None
                last_error = f"HTTP {r.status_code}: {_error_text(r)}"  # 503 while Redis is away
            self.stop_event.wait(backoff)
            backoff = min(backoff * 2, 1.0)
        self.history.record(
            REJECTED, request_id=spec.request_id, status=None, error=f"gave up at the deadline: {last_error}"
        )
        return None

    def _get(self, session: requests.Session, job_id: str) -> dict[str, Any] | None:
        """The job's view; {"status": "missing"} on 404; None when the API cannot answer now."""
        try:
            r = session.get(f"{self.api_url}/jobs/{job_id}", timeout=self.request_timeout)
        except requests.RequestException:
            return None
        if r.status_code == 404:
            return {"status": MISSING, "attempts": None, "worker": None}
        if r.status_code != 200:
            return None
        return r.json()

    def _watch(self, session: requests.Session, job_id: str) -> None:
        last: tuple[Any, Any, Any] | None = None
        missing_since: float | None = None
        while self._live():
            view = self._get(session, job_id)
            if view is not None:
                key = _view_key(view)
                if key != last:
                    last = key
                    self.history.record(
                        STATUS, job_id, status=key[0], attempts=key[1], worker=key[2], **_view_extras(view)
                    )
                if view.get("status") in TERMINAL_STATUSES:
                    self._record_terminal(job_id, view)
                    return
                if view.get("status") == MISSING:
                    missing_since = missing_since or time.monotonic()
                    if time.monotonic() - missing_since > self.workload.missing_grace_s:
                        return
                else:
                    missing_since = None
            self.stop_event.wait(self.workload.poll_interval)

    def _record_terminal(self, job_id: str, view: dict[str, Any], **extra: Any) -> None:
        attempts = view.get("attempts")
        data = {
            "status": view.get("status"),
            "attempts": attempts,
            "worker": view.get("worker"),
            "result": view.get("result"),
            "error": view.get("error"),
            "recovery": view.get("recovery"),
            **{k: v for k, v in _view_extras(view).items() if k != "recovery"},
            "late_completions": int(view.get("late_completions_rejected") or 0),
            # times the job was started (stock RQ counts none: unknown, not 1)
            "executions": attempts if attempts else None,
            **extra,
        }
        with self._lock:
            self._terminal[job_id] = data
        self.history.record(TERMINAL, job_id, **data)

    # -- after the run ----------------------------------------------------------------------

    def final_pass(self, *, timeout: float = 10.0) -> None:
        """Record every accepted job's final view (after faults healed) as a `status` event.

        A job that was terminal during the run and whose outcome then changed (a late
        completion was rejected, or worse: a zombie overwrote it, or it left finished/failed)
        gets a second `terminal` event, so the duplicates checker sees it and all-terminal
        judges the last word. A job that only ended after the deadline stays non-terminal.
        `timeout`: seconds the pass may spend waiting on an API that does not answer (however
        long the pass itself takes: a soak reads thousands of jobs).
        """
        session = requests.Session()
        unanswered_s = 0.0  # `timeout` bounds the time spent on an API that does not answer, not the pass
        try:
            for job_id in self.accepted():
                view = None
                while view is None and unanswered_s < timeout:
                    t = time.monotonic()
                    view = self._get(session, job_id)
                    if view is None:
                        time.sleep(0.2)
                        unanswered_s += time.monotonic() - t
                if view is None:
                    self.history.record(NOTE, job_id=job_id, text="final pass: API did not answer")
                    continue
                late = int(view.get("late_completions_rejected") or 0)
                self.history.record(
                    STATUS,
                    job_id,
                    status=view.get("status"),
                    attempts=view.get("attempts"),
                    worker=view.get("worker"),
                    late_completions=late,
                    final=True,
                    last_heartbeat_at=view.get("last_heartbeat_at"),
                    started_at=view.get("started_at"),
                    **_view_extras(view),
                )
                with self._lock:
                    before = self._terminal.get(job_id)
                if before is None:
                    continue
                changed = (
                    view.get("status") != before["status"]
                    or view.get("result") != before["result"]
                    or late != before["late_completions"]
                )
                if changed:
                    self._record_terminal(job_id, view, final=True)
        finally:
            session.close()


def _view_extras(view: Mapping[str, Any]) -> dict[str, Any]:
    """What reports show beside a status: the recovery reason, who recovered the job, peak RSS.

    Only keys the service reported, so that histories stay compact."""
    out: dict[str, Any] = {}
    if view.get("recovery"):
        out["recovery"] = view["recovery"]
    if view.get("recovered_by"):
        out["recovered_by"] = view["recovered_by"]
    facts = view.get("facts")
    if isinstance(facts, Mapping):
        for key in ("peak_rss_bytes", "duration_s", "cause"):
            if facts.get(key) is not None:
                out[key] = facts[key]
    return out


def _error_text(r: requests.Response) -> str:
    try:
        return str(r.json().get("error", r.text))[:300]
    except ValueError:
        return r.text[:300]
