"""`summary.json`: one record per run, one entry per scenario, in a fixed shape.

    {"run_id", "backend", "seed", "fix", "started_at", "duration_s",
     "scenarios": [{"name", "fault", "verdict": "pass|fail|unknown",
                    "jobs": {"accepted", "finished", "failed", "stuck", "lost", "duplicates"},
                    "recovery_s": {"p50", "p99", "max"}, "bound_s",
                    "checkers": {"<name>": "pass|fail|unknown"},
                    "faults": {"injected", "by_kind": {"<fault>": n}}, "recoveries"}]}

`faults` and `recoveries` (jobs hit by a fault that still reached finished/failed) are the run's
totals; an entry for a scenario that broke off before it was judged may leave them out.

The shape is written down once, as pydantic-checked TypedDicts (a validated file stays a plain
dict, which is what the report and JSON readers use). `RunSummary` accumulates scenario results
over a pytest session (the plugin owns one) and writes the file at the end; `validate_summary`
checks the shape and `read_summary` reads a file back through the same check.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from pydantic import ConfigDict, PlainValidator, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from harness.defaults import SUMMARY_FILE

__all__ = [
    "SUMMARY_FILE",
    "VERDICTS",
    "Faults",
    "Jobs",
    "Recovery",
    "RunSummary",
    "ScenarioEntry",
    "Summary",
    "read_summary",
    "summary_table",
    "validate_summary",
]

VERDICTS = ("pass", "fail", "unknown")

_Verdict = Literal["pass", "fail", "unknown"]


def _number(value: Any) -> int | float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError("must be a number or null")
    return value


#: Counts and seconds: a number, or null when not measured (never a bool or a string).
_Number = Annotated[int | float | None, PlainValidator(_number)]
_EXACT = ConfigDict(extra="forbid", strict=True, defer_build=True)


@with_config(_EXACT)
class Jobs(TypedDict):
    accepted: _Number
    finished: _Number
    failed: _Number
    stuck: _Number
    lost: _Number
    duplicates: _Number


@with_config(_EXACT)
class Recovery(TypedDict):
    p50: _Number
    p99: _Number
    max: _Number


@with_config(_EXACT)
class Faults(TypedDict):
    injected: _Number
    by_kind: dict[str, _Number]


@with_config(_EXACT)
class ScenarioEntry(TypedDict):
    name: str
    fault: str
    verdict: _Verdict
    jobs: Jobs
    recovery_s: Recovery
    bound_s: _Number
    checkers: dict[str, _Verdict]
    faults: NotRequired[Faults]
    recoveries: NotRequired[_Number]


@with_config(_EXACT)
class Summary(TypedDict):
    run_id: str
    backend: str
    seed: int | str
    fix: str
    started_at: str
    duration_s: _Number
    scenarios: list[ScenarioEntry]


_ENTRY = TypeAdapter(ScenarioEntry)
_SUMMARY = TypeAdapter(Summary)
_T = TypeVar("_T")


class RunSummary:
    """Scenario entries of one run, in the order they finished."""

    def __init__(
        self,
        *,
        run_id: str,
        backend: str,
        seed: int | str,
        fix: str,
        started_at: str | None = None,
        started_monotonic: float | None = None,
    ) -> None:
        """`started_at` (ISO time) and `started_monotonic` default to now: a summary made late
        (on the first scenario) still covers the session from its start."""
        self.run_id = run_id
        self.backend = backend
        self.seed = seed
        self.fix = fix
        self.started_at = started_at or datetime.now(UTC).isoformat(timespec="seconds")
        self._t0 = time.monotonic() if started_monotonic is None else started_monotonic
        self._lock = threading.Lock()
        self.scenarios: list[dict[str, Any]] = []

    def add(self, result: Any) -> None:
        """Add a `ScenarioResult` (or an entry dict already in the summary shape)."""
        entry = result if isinstance(result, dict) else result.summary_entry()
        _validate(_ENTRY, entry, "scenario")
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


def _where(loc: tuple[int | str, ...], root: str) -> str:
    out = root
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _validate(adapter: TypeAdapter[_T], data: Any, root: str) -> _T:
    """`adapter`'s check, its complaints as one ValueError naming each place (`scenarios[0].jobs`)."""
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_where(e['loc'], root)}: {e['msg']}"
            + ("" if e["type"] == "missing" else f" (got {repr(e['input'])[:80]})")
            for e in exc.errors()
        )
        raise ValueError(f"{root} does not have the summary.json shape: {problems}") from None


def validate_summary(data: Any) -> None:
    """Raise ValueError unless `data` has exactly the summary.json shape."""
    _validate(_SUMMARY, data, "summary")


def read_summary(path: str | Path) -> Summary:
    """Read a summary.json back; OSError if unreadable, ValueError if it is not JSON of the shape."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return _validate(_SUMMARY, data, "summary")


def summary_table(summary: Mapping[str, Any]) -> str:
    """The run's closing table, as `harness run` prints it: one row per scenario, its columns
    as wide as the longest scenario name needs."""

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"

    def n(v: Any) -> str:
        return "-" if v is None else str(v)

    scenarios = summary.get("scenarios", [])
    w = max([18, *(len(s["name"]) for s in scenarios)])
    lines = [
        f"\nrun {summary.get('run_id')}  fix={summary.get('fix')}  seed={summary.get('seed')}  "
        f"{summary.get('duration_s', 0):.0f} s",
        f"{'scenario':<{w}} {'verdict':<8} {'acc':>4} {'fin':>4} {'fail':>4} {'stuck':>5} {'lost':>4} "
        f"{'p50':>6} {'p99':>6} {'max':>6} {'bound':>6}",
    ]
    for s in scenarios:
        j, r = s["jobs"], s["recovery_s"]
        lines.append(
            f"{s['name']:<{w}} {s['verdict']:<8} {n(j['accepted']):>4} {n(j['finished']):>4} {n(j['failed']):>4} "
            f"{n(j['stuck']):>5} {n(j['lost']):>4} {f(r['p50']):>6} {f(r['p99']):>6} {f(r['max']):>6} "
            f"{f(s['bound_s']):>6}"
        )
    return "\n".join(lines)
