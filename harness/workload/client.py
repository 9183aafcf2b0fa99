"""Clients that submit jobs and watch them to the end, recording a `History`.

    workload = Workload(jobs=8, concurrency=2, mix={"light": 1, "slow": 1})
    run = WorkloadRun(workload, api_url=stack.api_url, history=history, seed=7, deadline=t0 + 20)
    run.start(); run.join(); run.final_pass()

Each of `concurrency` client threads is closed-loop, as a Jepsen client: it submits one job
through its `JobClient` (by default `POST /analyze` with real rows of scikit-learn's diabetes
data; a target's own API or its queues otherwise, see `harness.targets`), polls it until it is
finished or failed, then takes the next. Submissions survive an API crash or a
Redis outage: connection errors and 5xx answers are retried with backoff until the deadline.
Everything observed goes into the History: `submitted` / `accepted` / `rejected` per request,
a `status` event whenever (status, attempts, worker) changes, one `terminal` event per job, and
after the run (faults healed) a final pass records every job's final view once more.

The loops here are clients, not polls: every look is recorded, and the run's `stop_event`
interrupts every wait at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from harness.defaults import (
    CLIENT_BACKOFF_MAX_S,
    CLIENT_BACKOFF_S,
    CLIENT_REQUEST_TIMEOUT_S,
    FINAL_PASS_RETRY_S,
    FINAL_PASS_TIMEOUT_S,
    MISSING,
    TERMINAL_STATUSES,
)
from harness.workload.history import ACCEPTED, NOTE, REJECTED, STATUS, SUBMITTED, TERMINAL, History
from harness.workload.plan import JobSpec, Workload

__all__ = ["Answer", "JobClient", "WorkloadRun"]


@dataclass(frozen=True)
class Answer:
    """What one submission got: a job id (accepted), a refusal (4xx `status`), or `retry`."""

    job_id: str | None = None
    status: int | None = None
    error: str = ""
    retry: bool = False  # could not be submitted now (API down, 5xx, Redis away): try again
    expect: dict[str, Any] | None = None  # what the harness itself knows the result must be


class JobClient(Protocol):
    """How one client thread submits jobs and reads them back (`harness.targets`: http, rq)."""

    def submit(self, spec: JobSpec) -> Answer: ...

    def view(self, job_id: str) -> dict[str, Any] | None:
        """status / attempts / worker / result / error; {"status": "missing"} when the job is
        unknown; None when the service cannot answer now."""
        ...

    def close(self) -> None: ...


def _view_key(view: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return view.get("status"), view.get("attempts"), view.get("worker")


class WorkloadRun:
    """One execution of a `Workload` against an API, until done or `deadline` (monotonic)."""

    def __init__(
        self,
        workload: Workload,
        *,
        history: History,
        api_url: str | None = None,
        clients: Callable[[], JobClient] | None = None,
        seed: int | str,
        deadline: float,
        submit_until: float | None = None,
        request_timeout: float = CLIENT_REQUEST_TIMEOUT_S,
    ) -> None:
        """`deadline` (monotonic): the clients stop, watching included; `submit_until`: no new
        submission after this (a soak's time cap), the jobs in flight are still watched. `clients`
        makes each client thread's JobClient; the default posts to this repository's API at `api_url`."""
        if clients is None:
            if api_url is None:
                raise ValueError("WorkloadRun needs api_url or clients")
            from harness.targets.http_submit import HttpJobClient

            url = api_url

            def clients() -> JobClient:
                return HttpJobClient(api_url=url, request_timeout=request_timeout)

        self.workload = workload
        self.new_client = clients
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
        session = self.new_client()
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

    def _submit(self, session: JobClient, spec: JobSpec) -> str | None:
        backoff = CLIENT_BACKOFF_S
        attempt = 0
        last_error = ""
        while self._live():
            attempt += 1
            self.history.record(SUBMITTED, request_id=spec.request_id, job_kind=spec.kind, attempt=attempt)
            answer = session.submit(spec)
            if answer.job_id is not None:
                with self._lock:
                    self._kinds[answer.job_id] = spec.kind
                extra = {"expect": answer.expect} if answer.expect is not None else {}
                self.history.record(ACCEPTED, answer.job_id, request_id=spec.request_id, job_kind=spec.kind, **extra)
                return answer.job_id
            if not answer.retry:  # the request itself is wrong: no point retrying
                self.history.record(REJECTED, request_id=spec.request_id, status=answer.status, error=answer.error)
                return None
            last_error = answer.error
            self.stop_event.wait(backoff)
            backoff = min(backoff * 2, CLIENT_BACKOFF_MAX_S)
        self.history.record(
            REJECTED, request_id=spec.request_id, status=None, error=f"gave up at the deadline: {last_error}"
        )
        return None

    def _watch(self, session: JobClient, job_id: str) -> None:
        last: tuple[Any, Any, Any] | None = None
        missing_since: float | None = None
        while self._live():
            view = session.view(job_id)
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
            # times the job was started: the witness's count, else the service's (stock RQ
            # counts none: unknown, not 1)
            "executions": view.get("executions") or attempts or None,
            **extra,
        }
        with self._lock:
            self._terminal[job_id] = data
        self.history.record(TERMINAL, job_id, **data)

    # -- after the run ----------------------------------------------------------------------

    def final_pass(self, *, timeout: float = FINAL_PASS_TIMEOUT_S) -> None:
        """Record every accepted job's final view (after faults healed) as a `status` event.

        A job that was terminal during the run and whose outcome then changed (a late
        completion was rejected, or worse: a zombie overwrote it, or it left finished/failed)
        gets a second `terminal` event, so the duplicates checker sees it and all-terminal
        judges the last word. A job that only ended after the deadline stays non-terminal.
        `timeout`: seconds the pass may spend waiting on an API that does not answer (however
        long the pass itself takes: a soak reads thousands of jobs).
        """
        session = self.new_client()
        unanswered_s = 0.0  # `timeout` bounds the time spent on an API that does not answer, not the pass
        try:
            for job_id in self.accepted():
                view = None
                while view is None and unanswered_s < timeout:
                    t = time.monotonic()
                    view = session.view(job_id)
                    if view is None:
                        time.sleep(FINAL_PASS_RETRY_S)
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
