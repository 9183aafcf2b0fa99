"""Reading the witness's account from a history: which executions each job really had.

A run whose target submits probe jobs (`rq`) ends with one `witness` event per job the witness
saw (`harness.targets.witness`); the checkers count executions and judge fencing from these,
never from the service's `attempts`. `witnessed` is None for a run without a witness.
"""

from __future__ import annotations

from typing import Any

from harness.defaults import ZOMBIE_FAULTS
from harness.workload.history import FAULT_INJECTED, NOTE, WITNESS, History

__all__ = ["result_execution", "stale_result", "witnessed", "zombie_pids"]


def witnessed(history: History) -> dict[str, list[dict[str, Any]]] | None:
    """job id -> its executions in start order; None when the run had no witness."""
    had_witness = any(e.kind == NOTE and e.data.get("witness") for e in history.events)
    seen: dict[str, list[dict[str, Any]]] = {}
    for e in history.events:
        if e.kind == WITNESS and e.job_id is not None:
            had_witness = True
            seen[e.job_id] = list(e.data.get("executions") or [])
    return seen if had_witness else None


def result_execution(result: Any) -> str | None:
    """The execution id a probe's result carries (None: not a probe result)."""
    if isinstance(result, dict) and isinstance(result.get("execution_id"), str):
        return result["execution_id"]
    return None


def stale_result(result: Any, executions: list[dict[str, Any]]) -> str | None:
    """Why a job's final result is not its current attempt's (None: it is, or cannot be told).

    The current attempt is the latest-started execution that returned: a result from an earlier
    one is a zombie's overwrite; one from an execution the witness never saw is forged."""
    eid = result_execution(result)
    if eid is None:
        return None
    ids = [x.get("execution_id") for x in executions]
    if eid not in ids:
        return f"result of execution {eid[:8]}, which the witness never saw"
    returned = [x for x in executions if x.get("outcome") == "returned"]
    if returned and returned[-1].get("execution_id") != eid:
        return (
            f"result of execution {eid[:8]}, superseded by {str(returned[-1].get('execution_id'))[:8]}"
            " (a late result overwrote the newer attempt)"
        )
    return None


def zombie_pids(history: History) -> dict[str, set[int]]:
    """job id -> the pids a freezing fault stopped while they ran it (the zombie's processes)."""
    out: dict[str, set[int]] = {}
    for e in history.events:
        if e.kind == FAULT_INJECTED and e.data.get("fault") in ZOMBIE_FAULTS and e.job_id is not None:
            pids = {int(p) for p in e.data.get("pids") or [] if str(p).isdigit()}
            out.setdefault(e.job_id, set()).update(pids)
    return out
