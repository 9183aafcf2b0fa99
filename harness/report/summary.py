"""`summary.json`: one record per run, one entry per scenario, in a fixed shape.

    {"run_id", "backend", "seed", "fix", "started_at", "duration_s",
     "scenarios": [{"name", "fault", "verdict": "pass|fail|unknown",
                    "jobs": {"accepted", "finished", "failed", "stuck", "lost", "duplicates"},
                    "recovery_s": {"p50", "p99", "max"}, "bound_s",
                    "checkers": {"<name>": "pass|fail|unknown"},
                    "faults": {"injected", "by_kind": {"<fault>": n}}, "recoveries"}]}

`faults` and `recoveries` (jobs hit by a fault that still reached finished/failed) are the run's
totals; an entry for a scenario that broke off before it was judged may leave them out.

`RunSummary` accumulates scenario results over a pytest session (the plugin owns one) and
writes the file at the end; `validate_summary` checks the shape, for tests and readers.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["SUMMARY_FILE", "VERDICTS", "RunSummary", "validate_summary"]

SUMMARY_FILE = "summary.json"
VERDICTS = ("pass", "fail", "unknown")
_TOP = ("run_id", "backend", "seed", "fix", "started_at", "duration_s", "scenarios")
_SCENARIO = ("name", "fault", "verdict", "jobs", "recovery_s", "bound_s", "checkers")
_SCENARIO_TOTALS = ("faults", "recoveries")  # optional: a broken-off scenario has none
_FAULTS = ("injected", "by_kind")
_JOBS = ("accepted", "finished", "failed", "stuck", "lost", "duplicates")
_RECOVERY = ("p50", "p99", "max")


class RunSummary:
    """Scenario entries of one run, in the order they finished."""

    def __init__(self, *, run_id: str, backend: str, seed: int | str, fix: str) -> None:
        self.run_id = run_id
        self.backend = backend
        self.seed = seed
        self.fix = fix
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self.scenarios: list[dict[str, Any]] = []

    def add(self, result: Any) -> None:
        """Add a `ScenarioResult` (or an entry dict already in the summary shape)."""
        entry = result if isinstance(result, dict) else result.summary_entry()
        _check_entry(entry)
        with self._lock:
            self.scenarios.append(entry)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            scenarios = list(self.scenarios)
        return {
            "run_id": self.run_id,
            "backend": self.backend,
            "seed": self.seed,
            "fix": self.fix,
            "started_at": self.started_at,
            "duration_s": round(time.monotonic() - self._t0, 3),
            "scenarios": scenarios,
        }

    def write(self, report_dir: str | Path) -> Path:
        path = Path(report_dir) / SUMMARY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        validate_summary(data)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def _keys(obj: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object")
    if set(obj) != set(keys):
        raise ValueError(f"{where} must have exactly the keys {list(keys)}, got {sorted(obj)}")


def _number_or_none(value: Any, where: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{where} must be a number or null, got {value!r}")


def _check_entry(entry: Any, where: str = "scenario") -> None:
    present = tuple(k for k in _SCENARIO_TOTALS if isinstance(entry, dict) and k in entry)
    _keys(entry, _SCENARIO + present, where)
    if "faults" in present:
        faults = entry["faults"]
        _keys(faults, _FAULTS, f"{where}.faults")
        _number_or_none(faults["injected"], f"{where}.faults.injected")
        if not isinstance(faults["by_kind"], dict):
            raise ValueError(f"{where}.faults.by_kind must map fault names to counts")
        for name, n in faults["by_kind"].items():
            _number_or_none(n, f"{where}.faults.by_kind.{name}")
    if "recoveries" in present:
        _number_or_none(entry["recoveries"], f"{where}.recoveries")
    if entry["verdict"] not in VERDICTS:
        raise ValueError(f"{where}.verdict must be one of {VERDICTS}, got {entry['verdict']!r}")
    _keys(entry["jobs"], _JOBS, f"{where}.jobs")
    for k in _JOBS:
        _number_or_none(entry["jobs"][k], f"{where}.jobs.{k}")
    _keys(entry["recovery_s"], _RECOVERY, f"{where}.recovery_s")
    for k in _RECOVERY:
        _number_or_none(entry["recovery_s"][k], f"{where}.recovery_s.{k}")
    _number_or_none(entry["bound_s"], f"{where}.bound_s")
    if not isinstance(entry["checkers"], dict) or any(v not in VERDICTS for v in entry["checkers"].values()):
        raise ValueError(f"{where}.checkers must map names to one of {VERDICTS}")


def validate_summary(data: Any) -> None:
    """Raise ValueError unless `data` has exactly the summary.json shape."""
    _keys(data, _TOP, "summary")
    for i, entry in enumerate(data["scenarios"]):
        _check_entry(entry, f"scenarios[{i}]")
