"""A run's outcome: the checkers' judgement of its history (`judge`) and `ScenarioResult`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checkers import (
    AllTerminal,
    Duplicates,
    FaultsInjected,
    NoLost,
    RecoveryTime,
    Verdict,
    WorkloadRan,
    compose,
    default_checkers,
    run_checker,
)
from harness.checkers.evidence import DataLossReported
from harness.defaults import AVAILABILITY_DURING, AVAILABILITY_OUTSIDE
from harness.workload.history import FAULT_INJECTED, NOTE, History

__all__ = ["ScenarioResult", "fault_totals", "judge"]


@dataclass
class ScenarioResult:
    """One scenario's outcome: overall verdict, per-checker verdicts, counts, recovery times."""

    name: str
    fault: str
    fix: str
    seed: str
    overall: Verdict
    verdicts: list[Verdict]
    jobs: dict[str, int | None]
    recovery_s: dict[str, float | None]
    bound_s: float
    duration_s: float
    history: History
    history_path: Path | None = None
    log_dir: Path | None = None
    faults: dict[str, Any] = field(default_factory=lambda: {"injected": 0, "by_kind": {}})
    recoveries: int | None = None  # jobs hit by a fault that still reached finished/failed

    @property
    def verdict(self) -> str:
        return self.overall.status

    @property
    def passed(self) -> bool:
        return self.overall.valid is True

    def checker_statuses(self) -> dict[str, str]:
        return {v.name: v.status for v in self.verdicts}

    def summary_entry(self) -> dict[str, Any]:
        """This scenario as one entry of summary.json's `scenarios` list."""
        return {
            "name": self.name,
            "fault": self.fault,
            "verdict": self.verdict,
            "jobs": {k: self.jobs.get(k) for k in ("accepted", "finished", "failed", "stuck", "lost", "duplicates")},
            "recovery_s": {k: self.recovery_s.get(k) for k in ("p50", "p99", "max")},
            "bound_s": self.bound_s,
            "checkers": self.checker_statuses(),
            "faults": {
                "injected": int(self.faults.get("injected") or 0),
                "by_kind": dict(self.faults.get("by_kind") or {}),
            },
            "recoveries": self.recoveries,
        }

    def notes(self) -> list[str]:
        """Notes worth a reader's eye: faults that missed or failed, workers that died, crashes."""
        words = ("not injected", "failed to", "exited on its own", "crashed", "error")
        return [
            str(e.data.get("text"))
            for e in self.history.events
            if e.kind == NOTE and any(w in str(e.data.get("text")) for w in words)
        ]

    def explain(self, *, limit: int = 1500) -> str:
        """Why the verdict is not a pass: each failing or unknown checker with its details."""
        lines = [
            f"scenario {self.name} ({self.fault}, fix={self.fix}, seed={self.seed}): {self.verdict}",
            f"jobs {self.jobs}; recovery {self.recovery_s} bound {self.bound_s} s",
        ]
        for v in self.verdicts:
            if v.status != "pass":
                text = repr(_trim(v.details))
                lines.append(f"  {v.name}: {v.status}: {text[:limit]}")
        for note in self.notes():
            lines.append(f"  note: {note}")
        if self.history_path:
            lines.append(f"history: {self.history_path}")
        if self.log_dir:
            lines.append(f"logs: {self.log_dir}")
        return "\n".join(lines)


def _trim(details: dict[str, Any]) -> dict[str, Any]:
    """Drop bulky or empty fields from details for an assertion message."""
    out = {}
    for k, v in details.items():
        if k in ("samples",) or v in (None, [], {}, 0):
            continue
        out[k] = v
    return out


def _count(verdicts: dict[str, Verdict], name: str, key: str, *, length: bool = False) -> int | None:
    v = verdicts.get(name)
    if v is None or key not in v.details:
        return None
    value = v.details[key]
    return len(value) if length else int(value)


def fault_totals(history: History) -> dict[str, Any]:
    """How many faults were injected, in total and by fault name (kill-worker, ...)."""
    by_kind: dict[str, int] = {}
    for e in history.events:
        if e.kind == FAULT_INJECTED:
            name = str(e.data.get("fault"))
            by_kind[name] = by_kind.get(name, 0) + 1
    return {"injected": sum(by_kind.values()), "by_kind": dict(sorted(by_kind.items()))}


def judge(
    history: History,
    *,
    checkers: Iterable[str],
    expected_faults: Sequence[str],
    bound_s: float,
    result_check: str = "shap",
    result_path: Path | None = None,
    availability: tuple[float, float] = (AVAILABILITY_OUTSIDE, AVAILABILITY_DURING),
) -> dict[str, Any]:
    """Judge a run's history with the named standard checkers plus the run's own checks (the
    faults happened, the workload ran); the `ScenarioResult` fields that come from the verdicts."""
    wanted = set(checkers)
    standard = default_checkers(
        bound_s=bound_s, result_check=result_check, result_path=result_path, availability=availability
    ) + [DataLossReported()]  # only scenarios with a data-loss fault name it
    suite = [c for c in standard if c.name in wanted]
    suite += [FaultsInjected(expected_faults), WorkloadRan()]
    overall, verdicts = compose(suite, history)
    by_name = {v.name: v for v in verdicts}
    # Counts come from the checkers' details; run them directly when a scenario left one out.
    for extra in (AllTerminal(), NoLost(), Duplicates()):
        if extra.name not in by_name:
            by_name[extra.name] = run_checker(extra, history)
    jobs = {
        "accepted": _count(by_name, "all_terminal", "accepted"),
        "finished": _count(by_name, "all_terminal", "finished"),
        "failed": _count(by_name, "all_terminal", "failed"),
        "stuck": _count(by_name, "all_terminal", "stuck"),
        "lost": _count(by_name, "no_lost", "lost", length=True),
        "duplicates": _count(by_name, "duplicates", "duplicated_jobs"),
    }
    rt = by_name.get("recovery_time")
    recovery = {k: (rt.details.get(k) if rt is not None else None) for k in ("p50", "p99", "max")}
    recovery = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in recovery.items()}
    counted = rt if rt is not None else run_checker(RecoveryTime(bound_s=bound_s), history)
    recovered = counted.details.get("n")
    return {
        "overall": overall,
        "verdicts": verdicts,
        "jobs": jobs,
        "recovery_s": recovery,
        "faults": fault_totals(history),
        "recoveries": int(recovered) if isinstance(recovered, int) else None,
    }
