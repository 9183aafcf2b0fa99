"""Checkers that judge a recorded `History` after a chaos run.

Each checker answers one question (did every job end? was any lost? ...)
with a `Verdict`. A checker that cannot decide, or crashes, says "unknown",
which is never counted as a pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from harness.defaults import MISSING, NON_TERMINAL_STATUSES, TERMINAL_STATUSES
from harness.workload.history import (
    ACCEPTED,
    FAULT_INJECTED,
    REJECTED,
    STATUS,
    SUBMITTED,
    TERMINAL,
    Event,
    History,
)

__all__ = [
    "MISSING",
    "NON_TERMINAL_STATUSES",
    "TERMINAL_STATUSES",
    "AllTerminal",
    "Checker",
    "Duplicates",
    "ExpectedOutcome",
    "NoLost",
    "RecoveryTime",
    "ResultCorrect",
    "Verdict",
    "compose",
    "default_checkers",
    "percentile",
    "run_checker",
]


@dataclass(frozen=True)
class Verdict:
    """Outcome of one checker; `valid` None means unknown (not a pass)."""

    name: str
    valid: bool | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.valid is None:
            return "unknown"
        return "pass" if self.valid else "fail"


@runtime_checkable
class Checker(Protocol):
    name: str

    def check(self, history: History) -> Verdict: ...


def run_checker(checker: Checker, history: History) -> Verdict:
    """Run one checker; a crash becomes an unknown verdict, never a pass."""
    name = getattr(checker, "name", type(checker).__name__)
    try:
        verdict = checker.check(history)
        if not isinstance(verdict, Verdict):
            raise TypeError(f"check() returned {type(verdict).__name__}, not Verdict")
    except Exception as exc:  # noqa: BLE001 - any bug must surface as unknown
        return Verdict(name, None, {"error": f"{type(exc).__name__}: {exc}"})
    return verdict


def compose(checkers: Iterable[Checker], history: History) -> tuple[Verdict, list[Verdict]]:
    """Run all checkers: any fail fails; else any unknown is unknown.

    No checkers at all is unknown too: nothing checked is not a pass.
    """
    verdicts = [run_checker(c, history) for c in checkers]
    by_status: dict[str, list[str]] = {"pass": [], "fail": [], "unknown": []}
    for v in verdicts:
        by_status[v.status].append(v.name)
    if by_status["fail"]:
        valid: bool | None = False
    elif by_status["unknown"] or not verdicts:
        valid = None
    else:
        valid = True
    return Verdict("overall", valid, by_status), verdicts


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]); None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _by_job(history: History, kind: str) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for e in history.events:
        if e.kind == kind and e.job_id is not None:
            out.setdefault(e.job_id, []).append(e)
    return out


class AllTerminal:
    """Every accepted job must end finished or failed (its last terminal event)."""

    name = "all_terminal"

    def check(self, history: History) -> Verdict:
        last_seen: dict[str, str] = {}
        last_terminal: dict[str, str] = {}
        for e in history.events:
            if e.job_id is None:
                continue
            if e.kind in (STATUS, TERMINAL):
                last_seen[e.job_id] = str(e.data.get("status"))
            if e.kind == TERMINAL:
                last_terminal[e.job_id] = str(e.data.get("status"))
        jobs = history.jobs()
        counts = {"accepted": len(jobs), "finished": 0, "failed": 0, "stuck": 0}
        stuck = []
        for job_id in jobs:
            status = last_terminal.get(job_id)
            if status in TERMINAL_STATUSES:
                counts[status] += 1
            else:
                counts["stuck"] += 1
                stuck.append({"job_id": job_id, "last_status": last_seen.get(job_id, ACCEPTED)})
        return Verdict(self.name, not stuck, {**counts, "stuck_jobs": stuck})


class NoLost:
    """Every accepted job must still be known to the service afterwards.

    Lost: never observed again after acceptance, or last reported "missing".
    Submissions with neither an accept nor a reject are only reported: the
    client cannot know whether those jobs exist.
    """

    name = "no_lost"

    def check(self, history: History) -> Verdict:
        events = history.events
        accepted_at: dict[str, int] = {}
        last_obs: dict[str, str] = {}
        submitted: list[Any] = []
        answered: set[Any] = set()
        for i, e in enumerate(events):
            if e.kind == SUBMITTED:
                submitted.append(e.data.get("request_id"))
            elif e.kind in (ACCEPTED, REJECTED):
                answered.add(e.data.get("request_id"))
                if e.kind == ACCEPTED and e.job_id is not None:
                    accepted_at.setdefault(e.job_id, i)
            elif e.kind in (STATUS, TERMINAL) and e.job_id in accepted_at:
                last_obs[e.job_id] = str(e.data.get("status"))
        lost: dict[str, str] = {}
        for job_id in accepted_at:
            if job_id not in last_obs:
                lost[job_id] = "never observed"
            elif last_obs[job_id] == MISSING:
                lost[job_id] = "reported missing"
        unacked = [r for r in submitted if r not in answered]
        return Verdict(
            self.name,
            not lost,
            {
                "accepted": len(accepted_at),
                "lost": list(lost),
                "lost_reasons": lost,
                "unacknowledged": len(unacked),
                "unacknowledged_requests": unacked,
            },
        )


def _result_key(result: Any) -> str:
    return json.dumps(result, sort_keys=True, default=str)


class Duplicates:
    """Report re-executions; fail only when terminal outcomes conflict.

    At-least-once delivery makes re-runs expected after a kill, so they are
    shown, not failed. Two terminal events that disagree (status or result)
    mean a late zombie overwrote a newer attempt: that is a real bug.
    """

    name = "duplicates"

    def __init__(self, *, max_executions: int | None = None) -> None:
        self.max_executions = max_executions

    def check(self, history: History) -> Verdict:
        duplicated: dict[str, dict[str, int]] = {}
        conflicts: dict[str, dict[str, Any]] = {}
        over_max: dict[str, int] = {}
        late_total = 0
        for job_id, terms in _by_job(history, TERMINAL).items():
            executions = max(int(e.data.get("executions") or 0) for e in terms)
            late_total += max(int(e.data.get("late_completions") or 0) for e in terms)
            if executions > 1 or len(terms) > 1:
                duplicated[job_id] = {
                    "executions": executions,
                    "terminal_events": len(terms),
                }
            statuses = sorted({str(e.data.get("status")) for e in terms})
            results = {_result_key(e.data["result"]) for e in terms if e.data.get("result") is not None}
            if len(statuses) > 1 or len(results) > 1:
                conflicts[job_id] = {"statuses": statuses, "distinct_results": len(results)}
            if self.max_executions is not None and executions > self.max_executions:
                over_max[job_id] = executions
        details = {
            "duplicated_jobs": len(duplicated),
            "duplicates": duplicated,
            "late_completions": late_total,
            "conflicts": conflicts,
            "max_executions": self.max_executions,
            "over_max_executions": over_max,
        }
        return Verdict(self.name, not conflicts and not over_max, details)


def _scalar(value: Any) -> float:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"expected a number or 1-element list, got {len(value)} entries")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"non-numeric value {value!r}")
    return float(value)


def _additivity_errors(result: Any) -> list[tuple[float, float]]:
    """(|base + sum(shap_i) - pred_i|, pred_i) per row; ValueError if malformed."""
    if not isinstance(result, dict):
        raise ValueError("result is not an object")
    try:
        base = _scalar(result["base_value"])
        shap = result["shap_values"]
        preds = result["predictions"]
    except KeyError as exc:
        raise ValueError(f"result lacks {exc}") from exc
    if not isinstance(shap, list) or not isinstance(preds, list):
        raise ValueError("shap_values and predictions must be lists")
    if len(shap) != len(preds):
        raise ValueError(f"{len(shap)} shap rows for {len(preds)} predictions")
    errors = []
    for row, pred in zip(shap, preds, strict=True):
        if not isinstance(row, list):
            raise ValueError("shap_values row is not a list")
        pred = _scalar(pred)
        errors.append((abs(base + sum(_scalar(v) for v in row) - pred), pred))
    return errors


def _rank(err: float) -> float:
    return math.inf if math.isnan(err) else err


class ResultCorrect:
    """Finished results must satisfy SHAP additivity: base + sum(shap) = pred.

    A torn or mixed-up result (e.g. halves from two attempts) breaks it.
    """

    name = "result_correct"

    def __init__(self, *, rtol: float = 1e-6) -> None:
        self.rtol = rtol

    def check(self, history: History) -> Verdict:
        bad: dict[str, str] = {}
        unchecked: list[str] = []
        checked: set[str] = set()
        worst: dict[str, Any] | None = None
        for job_id, terms in _by_job(history, TERMINAL).items():
            finished = [e for e in terms if e.data.get("status") == "finished"]
            with_result = [e for e in finished if e.data.get("result") is not None]
            if finished and not with_result:
                unchecked.append(job_id)
            for e in with_result:
                checked.add(job_id)
                result = e.data["result"]
                try:
                    errors = _additivity_errors(result)
                except ValueError as exc:
                    bad.setdefault(job_id, f"malformed result: {exc}")
                    continue
                for i, (err, pred) in enumerate(errors):
                    tol = self.rtol * max(1.0, abs(pred))
                    if not err <= tol:  # also catches NaN
                        bad.setdefault(job_id, f"row {i}: error {err!r} > {tol!r}")
                    if worst is None or _rank(err) > _rank(worst["error"]):
                        worst = {"job_id": job_id, "row": i, "error": err}
        details = {
            "checked": len(checked),
            "bad_jobs": list(bad),
            "reasons": bad,
            "worst": worst,
            "unchecked": len(unchecked),
            "unchecked_jobs": unchecked,
            "rtol": self.rtol,
        }
        return Verdict(self.name, not bad, details)


class RecoveryTime:
    """Time from a fault to the affected job's finished/failed, within a bound.

    A fault affects the attempts it broke: the job it names (`job_id`), the jobs it lists as
    running when it struck (`running_jobs`), and the jobs last seen `started` on the worker it
    hit (`target`). Only a fault that names none of these affects every job accepted and not yet
    terminal (generous). A job merely queued behind a backlog is not timed: its wait is
    capacity, not recovery (all_terminal still judges that it ends). A job hit repeatedly is
    timed from the last fault before it ended (earlier faults were cut short by the later one).
    Affected jobs that never end fail the check.
    """

    name = "recovery_time"

    def __init__(self, *, bound_s: float) -> None:
        if bound_s < 0:
            raise ValueError(f"bound_s must be >= 0, got {bound_s}")
        self.bound_s = bound_s

    def check(self, history: History) -> Verdict:
        accepted: dict[str, None] = {}
        done: set[str] = set()
        running_on: dict[str, str] = {}  # job -> worker it was last seen `started` on
        pending: dict[str, float] = {}  # job -> t of latest affecting fault
        samples: dict[str, float] = {}
        for e in history.events:
            if e.kind == ACCEPTED and e.job_id is not None:
                accepted.setdefault(e.job_id, None)
            elif e.kind == STATUS and e.job_id is not None:
                if e.data.get("status") == "started" and e.data.get("worker"):
                    running_on[e.job_id] = str(e.data["worker"])
                else:
                    running_on.pop(e.job_id, None)
            elif e.kind == TERMINAL and e.data.get("status") in TERMINAL_STATUSES:
                if e.job_id is None or e.job_id in done:
                    continue
                done.add(e.job_id)
                if e.job_id in pending:
                    samples[e.job_id] = e.t - pending.pop(e.job_id)
            elif e.kind == FAULT_INJECTED:
                for job_id in _broken_by(e, running_on) or list(accepted):
                    if job_id not in done:
                        pending[job_id] = e.t
        values = list(samples.values())
        worst = max(values) if values else None
        over = [j for j, s in samples.items() if s > self.bound_s]
        details = {
            "n": len(values),
            "p50": percentile(values, 50),
            "p99": percentile(values, 99),
            "max": worst,
            "bound_s": self.bound_s,
            "samples": samples,
            "over_bound": over,
            "unrecovered": list(pending),
        }
        return Verdict(self.name, not over and not pending, details)


def _broken_by(e: Event, running_on: Mapping[str, str]) -> set[str]:
    """The attempts a fault event names as broken: its job, its running jobs, and the jobs last
    seen running on its target worker. Empty when it names none of these."""
    # record(..., job_id=x) puts the target in Event.job_id; accept data too.
    named = e.job_id if e.job_id is not None else e.data.get("job_id")
    hit = {str(named)} if named is not None else set()
    hit |= {str(j) for j in e.data.get("running_jobs") or []}
    target = e.data.get("target")
    if target:
        hit |= {j for j, w in running_on.items() if w == target}
    return hit


class Reexecutions:
    """No job runs more often than the faults that hit it explain: at most 1 + hits.

    Re-running a job its worker lost is the point of recovery; re-running one nobody broke
    means the recovery layer took a live job (a sweeper that cannot tell slow from dead), or
    two sweepers both requeued a dead one. A fault that names a job hits that job; one that
    names none hits every job accepted and not yet terminal at that time (generous on purpose).
    Jobs whose own kind is the fault (a job that hangs or eats memory is retried by design)
    are not judged.
    """

    name = "reexecutions"
    SELF_FAULTING = ("hang", "hungry")

    def check(self, history: History) -> Verdict:
        accepted: dict[str, None] = {}
        done: set[str] = set()
        hits: dict[str, int] = {}
        executions: dict[str, int] = {}
        exempt: set[str] = set()
        for e in history.events:
            if e.kind == ACCEPTED and e.job_id is not None:
                accepted.setdefault(e.job_id, None)
                if e.data.get("job_kind") in self.SELF_FAULTING:
                    exempt.add(e.job_id)
            elif e.kind == TERMINAL and e.job_id is not None:
                if e.data.get("status") in TERMINAL_STATUSES:
                    done.add(e.job_id)
                executions[e.job_id] = max(executions.get(e.job_id, 0), int(e.data.get("executions") or 0))
            elif e.kind == FAULT_INJECTED:
                target = e.job_id if e.job_id is not None else e.data.get("job_id")
                for job_id in [target] if target is not None else [j for j in accepted if j not in done]:
                    hits[job_id] = hits.get(job_id, 0) + 1
        unexplained = {
            j: {"executions": n, "faults": hits.get(j, 0)}
            for j, n in executions.items()
            if n > 1 + hits.get(j, 0) and j not in exempt
        }
        return Verdict(self.name, not unexplained, {"unexplained": unexplained, "jobs": len(executions)})


class ExpectedOutcome:
    """Each job ends the way its kind says: a valid request finishes, a hanging one fails.

    all_terminal accepts `failed` as an ending; this one catches a recovery layer that fails
    good jobs (gives up too early, or keeps killing live work until attempts run out). Kinds
    come from the workload's `accepted` events (`job_kind`); unknown kinds are not judged.

    One exception, the retry policy itself: a job whose every attempt a fault cut short (its
    worker or horse killed, paused, cut off, or Redis killed while it ran; at least as many such
    hits as it had executions) may end `failed` with its attempts exhausted. Listed, not failed.
    """

    name = "expected_outcome"
    EXPECTED = {"light": "finished", "heavy": "finished", "slow": "finished", "hang": "failed"}

    def check(self, history: History) -> Verdict:
        kinds: dict[str, str] = {}
        final: dict[str, str] = {}
        executions: dict[str, int] = {}
        hits: dict[str, int] = {}
        for e in history.events:
            if e.kind == ACCEPTED and e.job_id is not None and e.data.get("job_kind"):
                kinds[e.job_id] = str(e.data["job_kind"])
            elif e.kind == TERMINAL and e.job_id is not None:
                final[e.job_id] = str(e.data.get("status"))
                executions[e.job_id] = max(executions.get(e.job_id, 0), int(e.data.get("executions") or 0))
            elif e.kind == FAULT_INJECTED:
                for job_id in _attempt_hits(e):
                    hits[job_id] = hits.get(job_id, 0) + 1
        wrong: dict[str, dict[str, Any]] = {}
        exhausted: dict[str, dict[str, int]] = {}
        for j, k in kinds.items():
            if k not in self.EXPECTED or j not in final or final[j] == self.EXPECTED[k]:
                continue
            n, hit = executions.get(j, 0), hits.get(j, 0)
            if self.EXPECTED[k] == "finished" and final[j] == "failed" and 0 < n <= hit:
                exhausted[j] = {"executions": n, "faults": hit}
                continue
            wrong[j] = {"kind": k, "expected": self.EXPECTED[k], "got": final[j]}
        return Verdict(
            self.name,
            not wrong,
            {
                "wrong": wrong,
                "judged": sum(k in self.EXPECTED for k in kinds.values()),
                "attempts_exhausted_by_faults": exhausted,
            },
        )


def _attempt_hits(e: Event) -> list[str]:
    """Jobs whose running attempt a fault event cut short: the job it names, or for a Redis kill
    the jobs it lists as running (an API crash cuts no attempt: workers carry on)."""
    target = e.job_id if e.job_id is not None else e.data.get("job_id")
    if target is not None:
        return [str(target)]
    if e.data.get("target") == "redis":
        return [str(j) for j in e.data.get("running_jobs") or []]
    return []


def default_checkers(*, bound_s: float) -> list[Checker]:
    """The standard suite for a chaos run."""
    return [
        AllTerminal(),
        NoLost(),
        Duplicates(),
        Reexecutions(),
        ExpectedOutcome(),
        ResultCorrect(),
        RecoveryTime(bound_s=bound_s),
    ]
