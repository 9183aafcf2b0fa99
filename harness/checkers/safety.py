"""Safety: no job runs more often than its faults explain, no zombie overwrites a newer attempt,
and every finished result is a real SHAP explanation (additivity holds)."""

from __future__ import annotations

import importlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.checkers.attribution import attributed
from harness.checkers.oracle import oracle_predictions
from harness.checkers.verdict import Verdict, events_by_job
from harness.checkers.witness import result_execution, stale_result, witnessed, zombie_pids
from harness.defaults import ADDITIVITY_RTOL, MISSING, ORACLE_RTOL, SELF_FAULTING_KINDS, TERMINAL_STATUSES
from harness.workload.history import ACCEPTED, TERMINAL, History

__all__ = ["Duplicates", "Reexecutions", "ResultCorrect", "additivity_errors"]


def _result_key(result: Any) -> str:
    return json.dumps(result, sort_keys=True, default=str)


class Duplicates:
    """Report re-executions; fail only when terminal outcomes conflict.

    At-least-once delivery makes re-runs expected after a kill, so they are
    shown, not failed. Two terminal events that disagree (status or result)
    mean a late zombie overwrote a newer attempt: that is a real bug. With a
    witness, executions are its count, a final result from a superseded or
    unseen execution fails (fencing), and a frozen execution that never ended
    after the heal leaves fencing untested: unknown. A job that ended and was
    then read as missing (Redis lost it) is loss, not a conflict: no_lost and
    data_loss_reported judge it; here it is only listed.
    """

    name = "duplicates"

    def __init__(self, *, max_executions: int | None = None) -> None:
        self.max_executions = max_executions

    def check(self, history: History) -> Verdict:
        duplicated: dict[str, dict[str, int]] = {}
        conflicts: dict[str, dict[str, Any]] = {}
        over_max: dict[str, int] = {}
        stale: dict[str, str] = {}
        idle_zombies: list[str] = []
        lost_after_ending: list[str] = []
        late_total = 0
        seen = witnessed(history)
        frozen = zombie_pids(history)
        for job_id, all_terms in events_by_job(history, TERMINAL).items():
            terms = [e for e in all_terms if e.data.get("status") != MISSING]
            if len(terms) < len(all_terms):
                lost_after_ending.append(job_id)
            if not terms:
                continue
            executions = max(int(e.data.get("executions") or 0) for e in terms)
            if seen is not None:  # the witness's count, not the service's
                executions = len(seen.get(job_id, []))
                for x in seen.get(job_id, []):
                    if x.get("pid") in frozen.get(job_id, set()) and x.get("ended") is None:
                        idle_zombies.append(job_id)  # fencing was never put to the test
                final = terms[-1]
                if final.data.get("status") == "finished":
                    why = stale_result(final.data.get("result"), seen.get(job_id, []))
                    if why is not None:
                        stale[job_id] = why
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
            "witness": seen is not None,
            "stale_results": stale,
            "zombies_that_never_acted": idle_zombies,
            "lost_after_ending": lost_after_ending,
        }
        if conflicts or over_max or stale:
            return Verdict(self.name, False, details)
        return Verdict(self.name, None if idle_zombies else True, details)


class Reexecutions:
    """No job runs more often than the faults that hit it explain: at most 1 + hits.

    Re-running a job its worker lost is the point of recovery; re-running one nobody broke
    means the recovery layer took a live job (a sweeper that cannot tell slow from dead), or
    two sweepers both requeued a dead one. A fault excuses what it hit (`FaultHits.excused`):
    its job and what ran on its worker, a Redis kill's running jobs, nothing for an API crash.
    Jobs whose own kind is the fault (a job that hangs or eats memory is retried by design)
    are not judged.
    """

    name = "reexecutions"
    SELF_FAULTING = SELF_FAULTING_KINDS

    def check(self, history: History) -> Verdict:
        seen = witnessed(history)
        accepted: dict[str, None] = {}
        done: set[str] = set()
        hits: dict[str, int] = {}
        executions: dict[str, int] = {}
        exempt: set[str] = set()
        for e, fault in attributed(history):
            if e.kind == ACCEPTED and e.job_id is not None:
                accepted.setdefault(e.job_id, None)
                if e.data.get("job_kind") in self.SELF_FAULTING:
                    exempt.add(e.job_id)
            elif e.kind == TERMINAL and e.job_id is not None:
                if e.data.get("status") in TERMINAL_STATUSES:
                    done.add(e.job_id)
                executions[e.job_id] = max(executions.get(e.job_id, 0), int(e.data.get("executions") or 0))
            elif fault is not None:
                for job_id in fault.excused:
                    hits[job_id] = hits.get(job_id, 0) + 1
        if seen is not None:  # the witness's count, not the service's
            executions = {j: len(seen.get(j, [])) for j in accepted}
        unexplained = {
            j: {"executions": n, "faults": hits.get(j, 0)}
            for j, n in executions.items()
            if n > 1 + hits.get(j, 0) and j not in exempt
        }
        details = {"unexplained": unexplained, "jobs": len(executions), "witness": seen is not None}
        return Verdict(self.name, not unexplained, details)


def _scalar(value: Any) -> float:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"expected a number or 1-element list, got {len(value)} entries")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"non-numeric value {value!r}")
    return float(value)


def additivity_errors(result: Any) -> list[tuple[float, float]]:
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
    """Every finished job's result is right for what was asked; one with no result fails.

    `mode` is the target's `result_check`: `shap` (this service: SHAP additivity,
    base + sum(shap) = prediction per row, which a torn or mixed-up result breaks; and the result
    answers its request: its rows, its features, and predictions equal to the harness's own
    model's for the rows sent, `harness.checkers.oracle`), `probe` (a
    probe job's value equals what the harness computed for its request, and it names the
    execution that produced it), `none` (nothing is checked, and the verdict says so), or
    "package.module:function", called as function(result, expect) -> None or the reason it is wrong.
    """

    name = "result_correct"

    def __init__(self, *, mode: str = "shap", rtol: float = ADDITIVITY_RTOL, path: Path | None = None) -> None:
        """`path`: a directory the custom check's module may be imported from (the target's)."""
        self.mode = mode
        self.rtol = rtol
        self.path = path

    def _custom(self) -> Callable[[Any, Any], str | None]:
        module, _, attr = self.mode.partition(":")
        if self.path is not None and str(self.path) not in sys.path:
            sys.path.insert(0, str(self.path))
        return getattr(importlib.import_module(module), attr)

    def check(self, history: History) -> Verdict:
        if self.mode == "none":
            return Verdict(self.name, True, {"mode": "none", "checked": 0, "note": "the target asks for no check"})
        custom = self._custom() if self.mode not in ("shap", "probe") else None
        expects = {e.job_id: e.data.get("expect") for e in history.events if e.kind == ACCEPTED and e.job_id}
        bad: dict[str, str] = {}
        unchecked: list[str] = []
        checked: set[str] = set()
        worst: dict[str, Any] | None = None
        for job_id, terms in events_by_job(history, TERMINAL).items():
            finished = [e for e in terms if e.data.get("status") == "finished"]
            with_result = [e for e in finished if e.data.get("result") is not None]
            if finished and not with_result:
                unchecked.append(job_id)  # nothing to check is no proof: the job fails the check
                bad.setdefault(job_id, "finished without a result")
            for e in with_result:
                checked.add(job_id)
                result = e.data["result"]
                if self.mode == "probe":
                    why = _probe_error(result, expects.get(job_id))
                elif custom is not None:
                    try:
                        why = custom(result, expects.get(job_id))
                    except Exception as exc:  # noqa: BLE001 - a check that crashes proves nothing
                        why = f"{self.mode} raised {type(exc).__name__}: {exc}"
                else:
                    why, worst = self._additivity(job_id, result, worst)
                    why = why or _request_error(result, expects.get(job_id))
                if why:
                    bad.setdefault(job_id, str(why))
        details = {
            "mode": self.mode,
            "checked": len(checked),
            "bad_jobs": list(bad),
            "reasons": bad,
            "worst": worst,
            "unchecked": len(unchecked),
            "unchecked_jobs": unchecked,
            "rtol": self.rtol,
        }
        return Verdict(self.name, not bad, details)

    def _additivity(self, job_id: str, result: Any, worst: dict[str, Any] | None) -> tuple[str | None, Any]:
        try:
            errors = additivity_errors(result)
        except ValueError as exc:
            return f"malformed result: {exc}", worst
        why = None
        for i, (err, pred) in enumerate(errors):
            tol = self.rtol * max(1.0, abs(pred))
            if not err <= tol and why is None:  # also catches NaN
                why = f"row {i}: error {err!r} > {tol!r}"
            if worst is None or _rank(err) > _rank(worst["error"]):
                worst = {"job_id": job_id, "row": i, "error": err}
        return why, worst


def _request_error(result: Any, expect: Any) -> str | None:
    """Why a SHAP result does not answer its request (None: it does, or the request is unknown):
    one row of values per row sent, one value per feature sent, and predictions equal to the
    harness's own model's for those rows."""
    body = expect.get("body") if isinstance(expect, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("rows"), list) or not body["rows"]:
        return None
    rows = body["rows"]
    shap = result["shap_values"]
    if len(shap) != len(rows):
        return f"{len(shap)} rows of SHAP values for the {len(rows)} rows sent"
    for i, (values, row) in enumerate(zip(shap, rows, strict=True)):
        if len(values) != len(row):
            return f"row {i}: {len(values)} SHAP values for {len(row)} features sent"
    want = oracle_predictions(str(body.get("model", "")), rows)
    if want is None:
        return None
    for i, (got, exp) in enumerate(zip(result["predictions"], want, strict=True)):
        if not abs(_scalar(got) - exp) <= ORACLE_RTOL * max(1.0, abs(exp)):
            return f"row {i}: prediction {_scalar(got)!r} is not the model's {exp!r} for the row sent"
    return None


def _probe_error(result: Any, expect: Any) -> str | None:
    """Why a probe job's result is not what its request asked for (None: it is)."""
    if result_execution(result) is None:
        return "not a probe result (no execution_id)"
    want = expect.get("value") if isinstance(expect, dict) else None
    if want is not None and result.get("value") != want:
        return f"value {str(result.get('value'))[:16]}... is not the {str(want)[:16]}... its request computes"
    return None
