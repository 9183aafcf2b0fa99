"""The HTML recovery report: ``<report-dir>/index.html`` from summary.json and the histories.

    render(report_dir) -> Path          (harness report DIR; the plugin calls it after a run)

One self-contained file that opens from disk: inline CSS, charts as inline SVG (native
``<title>`` tooltips, no JavaScript), every datum escaped. It reads what a run leaves behind:

    <report-dir>/summary.json                    verdicts and counts (harness.report.summary)
    <report-dir>/env.json                        versions, machine, settings (`write_environment`)
    <report-dir>/<scenario>/history.jsonl        every event of the scenario (harness.workload.history)
    <report-dir>/<scenario>/diagnose.json        diagnose-worker --json at the deadline, if jobs stuck
    <report-dir>/<scenario>/logs/*.log           service logs: who recovered a job (job_requeued ...)

The page: a verdict banner, the scenario table, recovery times against their bounds, then per
scenario a timeline (a lane per worker, plus Redis / API for their faults; a bar per attempt of
a job; faults, heals and detections as markers), the recovery-time histogram, and for every job
that did not recover its full event trail, its last heartbeat and the diagnosis.
"""

from __future__ import annotations

import html
import json
import math
import os
import platform
import shlex
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.checkers import AllTerminal, NoLost, RecoveryTime
from harness.defaults import MAX_TRAIL_EVENTS, MAX_TRAILS, TERMINAL_STATUSES
from harness.report.summary import SUMMARY_FILE
from harness.workload.history import (
    ACCEPTED,
    FAULT_HEALED,
    FAULT_INJECTED,
    NOTE,
    STATUS,
    TERMINAL,
    Event,
    History,
)

__all__ = [
    "ENV_FILE",
    "REPORT_FILE",
    "ReportError",
    "collect_environment",
    "render",
    "rerun_command",
    "write_environment",
]

REPORT_FILE = "index.html"
ENV_FILE = "env.json"
HISTORY_FILE = "history.jsonl"
DIAGNOSE_FILE = "diagnose.json"
TEMPLATE = Path(__file__).resolve().parent / "templates" / "report.html"
#: Python packages whose versions the report lists.
PACKAGES = ("shap-chaos", "rq", "redis", "shap", "scikit-learn", "numpy", "fastapi", "uvicorn", "pytest")
#: At most this many unrecovered jobs get a full event trail (the rest are listed by id).
#: At most this many events per trail (first and last halves when longer).


class ReportError(RuntimeError):
    """The directory does not hold a run (no summary.json) or it cannot be read."""


# -- environment (env.json) ---------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001
        return None


def rerun_command(
    *,
    seed: Any,
    fix: str,
    profile: str = "ci",
    backend: str = "local",
    scenarios: Sequence[str] = (),
    repair_cmd: str | None = None,
    report_dir: str | None = None,
    redis_auth: str | None = None,
) -> str:
    """The `harness run` command line that repeats a run's schedule."""
    argv = ["harness", "run"]
    for name in scenarios:
        argv += ["--scenario", name]
    argv += ["--seed", str(seed), "--fix", fix]
    if profile != "ci":
        argv += ["--profile", profile]
    if backend != "local":
        argv += ["--backend", backend]
    if repair_cmd:
        argv += ["--repair-cmd", repair_cmd]
    if redis_auth and redis_auth != "none":
        argv += ["--redis-auth", redis_auth]
    if report_dir:
        argv += ["--report-dir", report_dir]
    return shlex.join(argv)


def collect_environment(
    *,
    backend: str,
    seed: Any,
    fix: str,
    profile: str,
    profile_env: Mapping[str, str],
    scenarios_selected: bool = False,
    repair_cmd: str | None = None,
    redis_auth: str = "none",
) -> dict[str, Any]:
    """What a reader needs to trust or repeat a run: versions, machine, settings.

    `redis_auth` is the --redis-auth mode (none, password, tls), never the password."""
    try:
        cores_usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores_usable = None
    return {
        "backend": backend,
        "seed": seed,
        "fix": fix,
        "profile": profile,
        "profile_env": dict(profile_env),
        "scenarios_selected": scenarios_selected,
        "repair_cmd": repair_cmd,
        "redis_auth": redis_auth,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "cpu_count": os.cpu_count(),
        "cpu_usable": cores_usable,
        "memory_bytes": _memory_bytes(),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_environment(report_dir: str | Path, env: Mapping[str, Any]) -> Path:
    path = Path(report_dir) / ENV_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")
    return path


# -- reading a run ---------------------------------------------------------------------------


@dataclass
class Segment:
    """One attempt of a job on one worker, as observed by polling."""

    job_id: str
    lane: str
    attempt: int
    start: float
    end: float
    outcome: str  # finished | failed | abandoned | stuck
    start_seen: bool = True  # False: the job finished between two polls; start is the poll before
    row: int = 0


@dataclass
class Detection:
    """A moment the service gave up on an attempt: requeued or failed by a recovery."""

    job_id: str
    t: float
    lane: str | None
    reason: str
    action: str
    by: str | None = None


@dataclass
class JobTrack:
    job_id: str
    kind: str | None = None
    request_id: str | None = None
    accepted_t: float | None = None
    events: list[Event] = field(default_factory=list)
    terminal: dict[str, Any] | None = None
    terminal_t: float | None = None
    segments: list[Segment] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    peak_rss: int | None = None

    @property
    def status(self) -> str:
        return str(self.terminal.get("status")) if self.terminal else "stuck"

    @property
    def attempts(self) -> int | None:
        for e in reversed(self.events):
            if e.kind in (STATUS, TERMINAL) and e.data.get("attempts") is not None:
                return int(e.data["attempts"])
        return None


@dataclass
class ScenarioView:
    entry: dict[str, Any]
    history: History | None
    error: str | None
    jobs: dict[str, JobTrack]
    lanes: list[tuple[str, str]]  # (key, label)
    faults: list[dict[str, Any]]  # {t, end, fault, label, target, job_id, data}
    notes: list[Event]
    end_t: float
    final_t: float
    stuck: list[str]
    lost: list[str]
    samples: dict[str, float]
    over_bound: list[str]
    unrecovered: list[str]
    diagnose: Any
    start_note: dict[str, Any]
    recoverers: dict[str, list[dict[str, Any]]]


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _recoverers(log_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """job id -> the service's job_requeued / job_failed log records (attempt, by, cause, reason)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if not log_dir.is_dir():
        return out
    for path in sorted(log_dir.glob("*.log")):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if '"job_requeued"' not in line and '"job_failed"' not in line:
                        continue
                    start = line.find("{")
                    try:
                        rec = json.loads(line[start:])
                    except ValueError:
                        continue
                    if isinstance(rec, dict) and rec.get("job_id"):
                        out.setdefault(str(rec["job_id"]), []).append(rec)
        except OSError:
            continue
    return out


def _lane_for_target(target: Any) -> str | None:
    if target in (None, ""):
        return None
    return str(target)


def _build_segments(job: JobTrack, end_t: float, *, stuck: bool = False) -> None:
    """Attempts per worker from the polled status events (Jepsen-style bars).

    `end_t` is when the run stopped watching (the final phase); for a job judged stuck the
    final read after it (e.g. a paused worker resumed by the heal) does not end its bar."""
    current: Segment | None = None
    prev_t = job.accepted_t if job.accepted_t is not None else 0.0
    prev_status: str | None = None
    last_recovery: str | None = None
    done = False
    for e in job.events:
        if e.kind not in (STATUS, TERMINAL):
            continue
        if stuck and e.t > end_t:
            break
        status = str(e.data.get("status"))
        worker = e.data.get("worker")
        attempts = int(e.data.get("attempts") or 0)
        recovery = e.data.get("recovery")
        if e.data.get("peak_rss_bytes"):
            job.peak_rss = int(e.data["peak_rss_bytes"])
        new_recovery = recovery and recovery != last_recovery
        if recovery:
            last_recovery = recovery
        if done:
            prev_t, prev_status = e.t, status
            continue
        if status == "started" and worker:
            if current is not None and (current.lane, current.attempt) == (worker, attempts):
                prev_t, prev_status = e.t, status
                continue
            if current is not None:  # handed over without a queued observation in between
                current.end, current.outcome = e.t, "abandoned"
                job.detections.append(
                    Detection(job.job_id, e.t, current.lane, str(recovery or "another attempt started"), "requeued")
                )
                new_recovery = False
            current = Segment(job.job_id, str(worker), attempts, e.t, e.t, "running")
            job.segments.append(current)
        elif status in TERMINAL_STATUSES:
            if current is not None and worker and (current.lane, current.attempt) != (worker, attempts):
                current.end, current.outcome = e.t, "abandoned"
                job.detections.append(Detection(job.job_id, e.t, current.lane, str(recovery or "retried"), "requeued"))
                new_recovery = False
                current = None
            if current is None and worker:
                current = Segment(job.job_id, str(worker), attempts, prev_t, e.t, status, start_seen=False)
                if prev_status == "started":
                    current.start_seen = True
                job.segments.append(current)
            if current is not None:
                current.end, current.outcome = e.t, status
            if status == "failed" and new_recovery:
                job.detections.append(
                    Detection(job.job_id, e.t, current.lane if current else None, str(recovery), "failed")
                )
            current = None
            done = True
        else:  # queued again (requeued by a recovery), missing, deferred, ...
            if current is not None and status != "started":
                current.end, current.outcome = e.t, "abandoned"
                action = "requeued" if status == "queued" else status
                job.detections.append(
                    Detection(job.job_id, e.t, current.lane, str(recovery or f"seen {status}"), action)
                )
                current = None
        prev_t, prev_status = e.t, status
    if current is not None:
        current.end, current.outcome = end_t, "stuck"
    if not job.terminal and not job.segments:
        lane = "queue"
        start = job.accepted_t if job.accepted_t is not None else 0.0
        job.segments.append(Segment(job.job_id, lane, 0, start, end_t, "stuck"))


def _assign_rows(segments: list[Segment]) -> int:
    """Overlapping bars in one lane go to sub-rows; returns the number of rows."""
    rows_end: list[float] = []
    for seg in sorted(segments, key=lambda s: (s.start, s.end)):
        for i, end in enumerate(rows_end):
            if seg.start >= end - 1e-9:
                seg.row = i
                rows_end[i] = max(seg.end, seg.start + 0.05)
                break
        else:
            seg.row = len(rows_end)
            rows_end.append(max(seg.end, seg.start + 0.05))
    return max(1, len(rows_end))


def _read_scenario(report_dir: Path, entry: dict[str, Any]) -> ScenarioView:
    sdir = report_dir / str(entry["name"])
    history: History | None = None
    error = None
    hpath = sdir / HISTORY_FILE
    if hpath.exists():
        try:
            history = History.load(hpath)
        except (OSError, ValueError) as exc:
            error = f"history could not be read: {exc}"
    else:
        error = f"no {HISTORY_FILE} in {sdir}"
    diagnose = None
    dpath = sdir / DIAGNOSE_FILE
    if dpath.exists():
        try:
            diagnose = _load_json(dpath)
        except (OSError, ValueError) as exc:
            diagnose = {"error": f"{DIAGNOSE_FILE} unreadable: {exc}"}
    events = list(history.events) if history is not None else []
    end_t = max((e.t for e in events), default=1.0)
    jobs: dict[str, JobTrack] = {}
    faults: list[dict[str, Any]] = []
    notes: list[Event] = []
    start_note: dict[str, Any] = {}
    for e in events:
        if e.kind == NOTE:
            notes.append(e)
            if not start_note and str(e.data.get("text", "")).startswith("scenario "):
                start_note = dict(e.data)
        elif e.kind == FAULT_INJECTED:
            faults.append(
                {
                    "t": e.t,
                    "end": None,
                    "fault": str(e.data.get("fault")),
                    "label": str(e.data.get("label") or e.data.get("fault")),
                    "target": _lane_for_target(e.data.get("target")),
                    "job_id": e.job_id,
                    "data": e.data,
                }
            )
        elif e.kind == FAULT_HEALED:
            for f in faults:  # heals name the fault, not the target: the oldest open one of that name
                if f["end"] is None and f["fault"] == str(e.data.get("fault")):
                    f["end"] = e.t
                    break
        if e.job_id is None:
            continue
        job = jobs.get(e.job_id)
        if job is None:
            if e.kind != ACCEPTED:
                continue
            job = jobs[e.job_id] = JobTrack(e.job_id)
        if e.kind == ACCEPTED and job.accepted_t is None:
            job.accepted_t = e.t
            job.kind = e.data.get("job_kind")
            job.request_id = e.data.get("request_id")
        if e.kind == TERMINAL:
            job.terminal = dict(e.data)
            if job.terminal_t is None:
                job.terminal_t = e.t
        job.events.append(e)
    stuck: list[str] = []
    lost: list[str] = []
    samples: dict[str, float] = {}
    over: list[str] = []
    unrecovered: list[str] = []
    if history is not None:
        at = AllTerminal().check(history)
        stuck = [s["job_id"] for s in at.details.get("stuck_jobs", [])]
        bound = entry.get("bound_s")
        rt = RecoveryTime(bound_s=float(bound) if isinstance(bound, (int, float)) else math.inf).check(history)
        samples = dict(rt.details.get("samples", {}))
        over = list(rt.details.get("over_bound", []))
        unrecovered = list(rt.details.get("unrecovered", []))
        lost = list(NoLost().check(history).details.get("lost", []))
    final_t = next(
        (e.t for e in notes if str(e.data.get("text", "")).startswith("final phase")),
        end_t,
    )
    recoverers = _recoverers(sdir / "logs")
    for job in jobs.values():
        _build_segments(job, final_t, stuck=job.job_id in stuck)
        recs = recoverers.get(job.job_id, [])
        for i, det in enumerate(job.detections):
            if i < len(recs):
                det.by = str(recs[i].get("by") or "") or None
    # Lanes: workers in start order, then new ones (restarts) in order of appearance.
    lane_keys: list[str] = [str(w) for w in start_note.get("workers") or []]
    for job in jobs.values():
        for seg in job.segments:
            if seg.lane != "queue" and seg.lane not in lane_keys:
                lane_keys.append(seg.lane)
    for f in faults:
        target = f["target"]
        if target and target not in lane_keys and target not in ("redis", "api"):
            lane_keys.append(target)
    lanes: list[tuple[str, str]] = []
    if any(f["target"] == "redis" for f in faults):
        lanes.append(("redis", "Redis"))
    if any(f["target"] == "api" for f in faults):
        lanes.append(("api", "API"))
    restarted = {str(f["data"].get("restarted")): f["target"] for f in faults if f["data"].get("restarted")}
    for key in lane_keys:
        label = key if key not in restarted else f"{key} ↻ {restarted[key]}"
        lanes.append((key, label))
    if any(s.lane == "queue" for j in jobs.values() for s in j.segments):
        lanes.append(("queue", "never started"))
    return ScenarioView(
        entry=entry,
        history=history,
        error=error,
        jobs=jobs,
        lanes=lanes,
        faults=faults,
        notes=notes,
        end_t=end_t,
        final_t=final_t,
        stuck=stuck,
        lost=lost,
        samples=samples,
        over_bound=over,
        unrecovered=unrecovered,
        diagnose=diagnose,
        start_note=start_note,
        recoverers=recoverers,
    )


# -- small HTML helpers ---------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _bytes(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _anchor(name: str) -> str:
    return "s-" + "".join(c if c.isalnum() else "-" for c in name)


def _pill(status: str, text: str | None = None) -> str:
    cls = {"pass": "ok", "fail": "bad", "unknown": "unk"}.get(status, "unk")
    mark = {"pass": "✓", "fail": "✗", "unknown": "?"}.get(status, "?")
    return f'<span class="pill {cls}">{mark} {esc(text if text is not None else status)}</span>'


def _short(job_id: str) -> str:
    return job_id[:8]


def _data_text(data: Mapping[str, Any]) -> str:
    """Event data for a trail row: bulky results summarised, the rest as compact JSON."""
    shown: dict[str, Any] = {}
    for k, v in data.items():
        if v in (None, "", [], {}):
            continue
        if k == "result" and isinstance(v, dict):
            rows = v.get("shap_values")
            shown[k] = f"<SHAP result, {len(rows) if isinstance(rows, list) else '?'} rows>"
            continue
        shown[k] = v
    text = json.dumps(shown, sort_keys=True, default=str)
    return text if len(text) <= 600 else text[:600] + " …"


# -- SVG charts -----------------------------------------------------------------------------

#: Faults that act once (the worker itself goes on): a marker line, no band over the lane.
INSTANT_FAULTS = frozenset({"kill-horse", "hang-job", "oom"})

COLOURS = {
    "finished": "#2f9e44",
    "failed": "#e8890c",
    "abandoned": "#8d96a3",
    "stuck": "#d6336c",
    "running": "#4c6ef5",
}
OUTCOME_TEXT = {
    "finished": "finished",
    "failed": "failed",
    "abandoned": "attempt abandoned (recovered later)",
    "stuck": "STUCK at the deadline",
    "running": "running",
}


def _nice_step(span: float, target: int = 10) -> float:
    raw = max(span, 1e-6) / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _text_width(text: str, size: float = 11.0) -> float:
    return len(text) * size * 0.58 + 6


def _svg_defs(uid: str) -> str:
    return (
        "<defs>"
        f'<pattern id="hatch-{uid}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="2" height="6" fill="#fff" fill-opacity="0.4"/></pattern>'
        f'<pattern id="stripe-{uid}" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)">'
        '<rect width="8" height="8" fill="#f1f3f5"/><rect width="3" height="8" fill="#ced4da"/></pattern>'
        "</defs>"
    )


def timeline_svg(view: ScenarioView, uid: str) -> str:
    """One lane per worker (+ Redis/API/never-started); a bar per attempt; fault and heal lines."""
    width = 1180.0
    left = 190.0
    right = 24.0
    plot_w = width - left - right
    span = max(view.end_t, 1.0)
    step = _nice_step(span, 12)
    t_max = math.ceil(span / step) * step

    def x(t: float) -> float:
        return left + plot_w * max(0.0, min(t, t_max)) / t_max

    # Fault labels above the plot, stacked in rows so that they never overlap.
    label_rows: list[float] = []
    labels: list[tuple[float, int, str, str]] = []  # x, row, text, class
    marks: list[tuple[float, str, str, dict[str, Any]]] = []
    healed_at_end: list[str] = []
    for f in view.faults:
        target = f" → {f['target']}" if f["target"] else ""
        marks.append((f["t"], "inject", f"⚡ {f['label']}{target}", f))
        if f["end"] is not None and f["end"] < view.final_t - 0.05:
            marks.append((f["end"], "heal", f"healed {f['label']}", f))
        elif f["end"] is not None:  # healed by the final phase: one label for all of them
            healed_at_end.append(f["label"])
    if view.final_t < view.end_t:
        marks.append((view.final_t, "final", "run ends: faults healed, final read", {"healed": healed_at_end}))
    for t, cls, text, _f in sorted(marks, key=lambda m: m[0]):
        x0 = x(t) - 3
        w = _text_width(text)
        if x0 + w > width - 2:
            x0 = width - 2 - w
        for i, end in enumerate(label_rows):
            if x0 >= end + 4:
                label_rows[i] = x0 + w
                row = i
                break
        else:
            label_rows.append(x0 + w)
            row = len(label_rows) - 1
        labels.append((x0, row, text, cls))
    top = 22 + 16 * len(label_rows)

    # Lanes
    row_h = 13.0
    lane_pad = 5.0
    by_lane: dict[str, list[Segment]] = {key: [] for key, _ in view.lanes}
    for job in view.jobs.values():
        for seg in job.segments:
            by_lane.setdefault(seg.lane, []).append(seg)
    lane_y: dict[str, tuple[float, float]] = {}
    y: float = top
    lane_parts: list[str] = []
    for i, (key, label) in enumerate(view.lanes):
        rows = _assign_rows(by_lane.get(key, []))
        h = rows * row_h + 2 * lane_pad
        lane_y[key] = (y, h)
        fill = "#f6f7f9" if i % 2 == 0 else "#ffffff"
        lane_parts.append(f'<rect x="0" y="{y:.1f}" width="{width:.0f}" height="{h:.1f}" fill="{fill}"/>')
        lane_parts.append(
            f'<text x="{left - 8:.0f}" y="{y + h / 2 + 4:.1f}" text-anchor="end" class="lane">{esc(label)}</text>'
        )
        y += h
    bottom = y
    height = bottom + 34

    parts: list[str] = [
        f'<svg class="timeline" viewBox="0 0 {width:.0f} {height:.0f}" width="100%" '
        f'role="img" aria-label="timeline of {esc(view.entry["name"])}">',
        _svg_defs(uid),
    ]
    parts += lane_parts
    # grid + axis
    t = 0.0
    while t <= t_max + 1e-9:
        gx = x(t)
        parts.append(f'<line x1="{gx:.1f}" y1="{top:.1f}" x2="{gx:.1f}" y2="{bottom:.1f}" class="grid"/>')
        parts.append(f'<text x="{gx:.1f}" y="{bottom + 14:.1f}" text-anchor="middle" class="tick">{t:g}</text>')
        t += step
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{bottom + 29:.1f}" text-anchor="middle" class="axis">'
        "seconds since the stack was ready</text>"
    )
    parts.append(
        f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{width - right:.1f}" y2="{bottom:.1f}" class="axisline"/>'
    )
    # fault bands on their target lane
    for f in view.faults:
        if f["target"] in lane_y and f["fault"] not in INSTANT_FAULTS:
            ly, lh = lane_y[f["target"]]
            end = f["end"] if f["end"] is not None else view.end_t
            bx, bw = x(f["t"]), max(2.0, x(end) - x(f["t"]))
            tip = f"{f['label']} on {f['target']}: t={f['t']:.2f}–{end:.2f} s"
            parts.append(
                f'<rect x="{bx:.1f}" y="{ly:.1f}" width="{bw:.1f}" height="{lh:.1f}" fill="url(#stripe-{uid})" '
                f'opacity="0.9"><title>{esc(tip)}</title></rect>'
            )
    # job bars
    for job in view.jobs.values():
        for seg in job.segments:
            if seg.lane not in lane_y:
                continue
            ly, _ = lane_y[seg.lane]
            by = ly + lane_pad + seg.row * row_h + 1
            bx = x(seg.start)
            bw = max(2.5, x(seg.end) - bx)
            colour = COLOURS.get(seg.outcome, "#999")
            duration = seg.end - seg.start
            tip_lines = [
                f"job {job.job_id}",
                f"kind {job.kind or '?'} · attempt {seg.attempt or '–'} of {job.attempts or '?'} on {seg.lane}",
                f"{OUTCOME_TEXT.get(seg.outcome, seg.outcome)} · t={seg.start:.2f}–{seg.end:.2f} s "
                f"({duration:.2f} s{'' if seg.start_seen else ', start between two polls'})",
                f"job status: {job.status}",
            ]
            if job.peak_rss:
                tip_lines.append(f"peak RSS {_bytes(job.peak_rss)}")
            if job.job_id in view.samples:
                tip_lines.append(f"recovered {view.samples[job.job_id]:.2f} s after the fault")
            tip = esc("\n".join(tip_lines))
            cls = "bar stuckbar" if seg.outcome == "stuck" else "bar"
            parts.append(
                f'<g class="{cls}"><title>{tip}</title>'
                f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" height="{row_h - 2:.1f}" rx="2" fill="{colour}"/>'
            )
            if seg.attempt >= 2:
                parts.append(
                    f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" height="{row_h - 2:.1f}" rx="2" '
                    f'fill="url(#hatch-{uid})"/>'
                )
            if seg.outcome == "stuck":
                ex = bx + bw
                parts.append(
                    f'<path d="M{ex:.1f},{by - 1:.1f} l6,{(row_h) / 2 - 0.5:.1f} l-6,{(row_h) / 2 - 0.5:.1f} z" '
                    f'fill="{colour}"/>'
                )
            label = _short(job.job_id) + (f" #{seg.attempt}" if seg.attempt >= 2 else "")
            label += " STUCK" if seg.outcome == "stuck" else ""
            if bw > len(label) * 5.8 + 10:  # only where it fits inside the bar
                parts.append(f'<text x="{bx + 4:.1f}" y="{by + row_h - 4.5:.1f}" class="barlabel">{esc(label)}</text>')
            parts.append("</g>")
        # connectors between consecutive attempts of a job
        for a, b in zip(job.segments, job.segments[1:], strict=False):
            if a.lane in lane_y and b.lane in lane_y:
                ay = lane_y[a.lane][0] + lane_pad + a.row * row_h + row_h / 2
                by2 = lane_y[b.lane][0] + lane_pad + b.row * row_h + row_h / 2
                parts.append(
                    f'<path d="M{x(a.end):.1f},{ay:.1f} L{x(b.start):.1f},{by2:.1f}" class="handover">'
                    f"<title>{esc(f'job {job.job_id}: attempt {a.attempt} → {b.attempt}')}</title></path>"
                )
    # detections (diamonds)
    for job in view.jobs.values():
        for det in job.detections:
            if det.lane not in lane_y:
                continue
            ly, lh = lane_y[det.lane]
            seg_rows = [s for s in job.segments if s.lane == det.lane and abs(s.end - det.t) < 1e-6]
            cy = ly + lane_pad + (seg_rows[0].row if seg_rows else 0) * row_h + row_h / 2
            cx = x(det.t)
            who = det.by or "not reported"
            tip = f"t={det.t:.2f} s: job {job.job_id} {det.action}\n{det.reason}\nby: {who}"
            parts.append(
                f'<g class="detect"><title>{esc(tip)}</title>'
                f'<path d="M{cx:.1f},{cy - 6:.1f} l6,6 l-6,6 l-6,-6 z" fill="#111" stroke="#fff" stroke-width="1"/>'
                "</g>"
            )
    # fault / heal lines and labels
    for t, cls, text, f in marks:
        mx = x(t)
        tip = f"t={t:.2f} s: {text}"
        if cls == "final":
            tip = (
                f"t={t:.2f} s: the clients stopped (all jobs ended or the deadline passed); every fault healed; "
                "then each job's final state was read. A job not finished/failed by here is stuck."
            )
            if f.get("healed"):
                tip += "\nhealed here: " + ", ".join(f["healed"])
        if cls == "inject":
            extra = {k: v for k, v in f["data"].items() if k not in ("fault", "label")}
            tip += "\n" + _data_text(extra)
        parts.append(
            f'<line x1="{mx:.1f}" y1="{top - 4:.1f}" x2="{mx:.1f}" y2="{bottom:.1f}" class="{cls}">'
            f"<title>{esc(tip)}</title></line>"
        )
    for lx, row, text, cls in labels:
        ly = 16 + 16 * row
        parts.append(f'<text x="{lx + 4:.1f}" y="{ly:.1f}" class="lbl-{cls}">{esc(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(samples: Sequence[float], bound: float | None, *, never: int = 0) -> str:
    """Recovery times in bins, the bound as a red line; jobs that never recovered as a last bar."""
    width, height = 560.0, 200.0
    left, right, top, bottom = 44.0, 96.0, 14.0, 40.0
    plot_w, plot_h = width - left - right, height - top - bottom
    hi = max([*samples, bound or 0.0, 1.0])
    step = _nice_step(hi, 10)
    nbins = max(1, math.ceil(hi / step))
    x_max = nbins * step
    counts = [0] * nbins
    for s in samples:
        counts[min(nbins - 1, int(s // step))] += 1
    top_count = max([*counts, never, 1])

    def x(v: float) -> float:
        return left + plot_w * v / x_max

    def yv(c: float) -> float:
        return top + plot_h - plot_h * c / top_count

    parts = [
        f'<svg class="hist" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        'role="img" aria-label="recovery time histogram">'
    ]
    ystep = max(1, math.ceil(top_count / 4))
    c = 0
    while c <= top_count:
        parts.append(f'<line x1="{left}" y1="{yv(c):.1f}" x2="{left + plot_w}" y2="{yv(c):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{yv(c) + 4:.1f}" text-anchor="end" class="tick">{c}</text>')
        c += ystep
    for i, n in enumerate(counts):
        if not n:
            continue
        lo = i * step
        colour = "#e8590c" if bound is not None and lo >= bound else "#4c6ef5"
        parts.append(
            f'<rect x="{x(lo) + 1:.1f}" y="{yv(n):.1f}" width="{max(1.0, x(step) - left - 2):.1f}" '
            f'height="{yv(0) - yv(n):.1f}" fill="{colour}"><title>{n} job(s) recovered in '
            f"{lo:g}–{lo + step:g} s</title></rect>"
        )
    v = 0.0
    while v <= x_max + 1e-9:
        parts.append(f'<text x="{x(v):.1f}" y="{top + plot_h + 14:.1f}" text-anchor="middle" class="tick">{v:g}</text>')
        v += step * (2 if nbins > 12 else 1)
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6:.1f}" text-anchor="middle" class="axis">'
        "seconds from fault to finished/failed</text>"
    )
    if bound is not None:
        bx = x(bound)
        parts.append(
            f'<line x1="{bx:.1f}" y1="{top - 4:.1f}" x2="{bx:.1f}" y2="{top + plot_h:.1f}" class="bound">'
            f"<title>bound {bound:g} s</title></line>"
        )
        label = f"bound {bound:g} s"
        if bx + _text_width(label) > left + plot_w:  # no room on the right: put it on the left
            parts.append(f'<text x="{bx - 4:.1f}" y="{top + 8:.1f}" text-anchor="end" class="lbl-bound">{label}</text>')
        else:
            parts.append(f'<text x="{bx + 4:.1f}" y="{top + 8:.1f}" class="lbl-bound">{label}</text>')
    nx = left + plot_w + 22
    parts.append(
        f'<line x1="{left + plot_w + 8}" y1="{top}" x2="{left + plot_w + 8}" y2="{top + plot_h}" class="sep"/>'
    )
    if never:
        parts.append(
            f'<rect x="{nx:.1f}" y="{yv(never):.1f}" width="40" height="{yv(0) - yv(never):.1f}" fill="#d6336c">'
            f"<title>{never} job(s) never recovered</title></rect>"
        )
    parts.append(
        f'<text x="{nx + 20:.1f}" y="{top + plot_h + 14:.1f}" text-anchor="middle" class="tick">never</text>'
        f'<text x="{nx + 20:.1f}" y="{yv(never) - 4:.1f}" text-anchor="middle" class="tick">{never}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def overview_svg(views: Sequence[ScenarioView]) -> str:
    """Every scenario's recovery times on one axis, each against its own bound."""
    width = 1180.0
    left, right = 190.0, 90.0
    row_h = 24.0
    top = 8.0
    plot_w = width - left - right
    hi = 1.0
    for v in views:
        hi = max([hi, *v.samples.values()])
        if isinstance(v.entry.get("bound_s"), (int, float)):
            hi = max(hi, float(v.entry["bound_s"]))
    step = _nice_step(hi, 12)
    x_max = math.ceil(hi * 1.02 / step) * step
    height = top + row_h * len(views) + 40

    def x(val: float) -> float:
        return left + plot_w * min(val, x_max) / x_max

    parts = [
        f'<svg class="overview" viewBox="0 0 {width:.0f} {height:.0f}" width="100%" '
        'role="img" aria-label="recovery time per scenario">'
    ]
    bottom = top + row_h * len(views)
    t = 0.0
    while t <= x_max + 1e-9:
        parts.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{bottom}" class="grid"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{bottom + 14}" text-anchor="middle" class="tick">{t:g}</text>')
        t += step
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{bottom + 30}" text-anchor="middle" class="axis">'
        "seconds from fault to finished/failed (each dot a job; red tick: the scenario's bound)</text>"
    )
    nx = left + plot_w + 14
    parts.append(f'<text x="{nx + 30:.1f}" y="{bottom + 14}" text-anchor="middle" class="tick">never</text>')
    for i, v in enumerate(views):
        y = top + i * row_h
        cy = y + row_h / 2
        if i % 2 == 0:
            parts.append(f'<rect x="0" y="{y:.1f}" width="{width:.0f}" height="{row_h}" fill="#f6f7f9"/>')
        name = str(v.entry["name"])
        parts.append(
            f'<a href="#{_anchor(name)}"><text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" class="lane">'
            f"{esc(name)}</text></a>"
        )
        bound = v.entry.get("bound_s")
        if isinstance(bound, (int, float)):
            bx = x(float(bound))
            parts.append(
                f'<line x1="{bx:.1f}" y1="{y + 3:.1f}" x2="{bx:.1f}" y2="{y + row_h - 3:.1f}" class="boundtick">'
                f"<title>{esc(name)}: bound {bound:g} s</title></line>"
            )
        for job_id, s in sorted(v.samples.items(), key=lambda kv: kv[1]):
            late = isinstance(bound, (int, float)) and s > bound
            parts.append(
                f'<circle cx="{x(s):.1f}" cy="{cy:.1f}" r="4" class="{"dot late" if late else "dot"}">'
                f"<title>{esc(f'{name}: job {job_id} recovered in {s:.2f} s')}</title></circle>"
            )
        never = len(set(v.unrecovered) | set(v.stuck))
        if never:
            parts.append(
                f'<text x="{nx + 30:.1f}" y="{cy + 4:.1f}" text-anchor="middle" class="never">✗ {never}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


# -- page sections -------------------------------------------------------------------------


def _banner(summary: dict[str, Any], views: Sequence[ScenarioView]) -> str:
    scenarios = summary.get("scenarios", [])
    failing = [s for s in scenarios if s.get("verdict") == "fail"]
    unknown = [s for s in scenarios if s.get("verdict") == "unknown"]
    stuck = sum(int(s["jobs"].get("stuck") or 0) for s in scenarios)
    lost = sum(int(s["jobs"].get("lost") or 0) for s in scenarios)
    accepted = sum(int(s["jobs"].get("accepted") or 0) for s in scenarios)
    injected = sum(len(v.faults) for v in views)
    n = len(scenarios)
    if failing:
        cls = "bad"
        head = f"FAIL: {len(failing)} of {n} scenario{'s' if n != 1 else ''} failed"
        bits = [f"{stuck} job{'s' if stuck != 1 else ''} stuck", f"{lost} lost", f"of {accepted} accepted"]
        bits.append(f"{injected} faults injected")
        if unknown:
            bits.append(f"{len(unknown)} unknown")
        sub = " · ".join(bits)
    elif unknown or not scenarios:
        cls = "unk"
        head = f"UNKNOWN: {len(unknown)} of {n} scenarios could not be judged" if scenarios else "No scenarios ran"
        sub = f"{stuck} stuck · {lost} lost · of {accepted} accepted · {injected} faults injected"
        sub += " · unknown is never a pass"
    else:
        cls = "ok"
        worst = [s["recovery_s"]["max"] for s in scenarios if s["recovery_s"].get("max") is not None]
        head = f"PASS: all {n} scenario{'s' if n != 1 else ''} recovered every job"
        sub = f"{accepted} jobs accepted, {accepted} terminal (100%), 0 stuck, 0 lost · {injected} faults injected" + (
            f" · slowest recovery {max(worst):.1f} s, every one within its bound" if worst else ""
        )
    meta = (
        f"fix <b>{esc(summary.get('fix'))}</b> · seed <b>{esc(summary.get('seed'))}</b> · "
        f"backend {esc(summary.get('backend'))} · run {esc(summary.get('run_id'))} · "
        f"started {esc(summary.get('started_at'))} · {_num(summary.get('duration_s'), 0)} s"
    )
    stuck_list = ""
    stuck_items = [(v, j) for v in views for j in v.stuck]
    if stuck_items:
        items = "".join(
            f'<li><a href="#job-{esc(j)}"><code>{esc(j)}</code></a> in {esc(v.entry["name"])} '
            f"({esc(_last_status(v.jobs.get(j), v.final_t))})</li>"
            for v, j in stuck_items[:12]
        )
        more = f"<li>… and {len(stuck_items) - 12} more</li>" if len(stuck_items) > 12 else ""
        stuck_list = (
            f'<div class="stucklist"><b>Stuck jobs</b> (never reached finished/failed):<ul>{items}{more}</ul></div>'
        )
    return (
        f'<section class="banner {cls}" id="verdict"><div class="head">{esc(head)}</div>'
        f'<div class="sub">{esc(sub)}</div><div class="meta">{meta}</div>{stuck_list}</section>'
    )


def _last_worker(job: JobTrack) -> str | None:
    for e in reversed(job.events):
        if e.kind in (STATUS, TERMINAL) and e.data.get("worker"):
            return str(e.data["worker"])
    return None


def _last_status(job: JobTrack | None, final_t: float | None = None) -> str:
    """How the job was last seen before the run stopped watching, and what the final read said."""
    if job is None:
        return "never"
    seen = [e for e in job.events if e.kind in (STATUS, TERMINAL)]
    if not seen:
        return "accepted, never polled"
    before = [e for e in seen if final_t is None or e.t <= final_t]
    after = [e for e in seen if final_t is not None and e.t > final_t]

    def fmt(e: Event) -> str:
        w = e.data.get("worker")
        return f"{e.data.get('status')}" + (f" on {w}" if w else "")

    text = f"{fmt(before[-1])} since t={_since(before):.1f} s" if before else "not polled before the deadline"
    if after and (not before or fmt(after[-1]) != fmt(before[-1])):
        text += f"; the final read after healing: {fmt(after[-1])}"
    return text


def _since(events: list[Event]) -> float:
    """When the last state in `events` was first seen (the start of an unbroken run of it)."""
    last = events[-1]
    key = (last.data.get("status"), last.data.get("worker"))
    t = last.t
    for e in reversed(events):
        if (e.data.get("status"), e.data.get("worker")) != key:
            break
        t = e.t
    return t


def _table(summary: dict[str, Any]) -> str:
    rows = []
    for s in summary.get("scenarios", []):
        j, r, bound = s["jobs"], s["recovery_s"], s.get("bound_s")
        cells = []

        def count(key: str, bad_if_positive: bool, j: dict = j) -> str:
            v = j.get(key)
            cls = ' class="num badcell"' if bad_if_positive and v else ' class="num"'
            return f"<td{cls}>{_num(v)}</td>"

        cells.append(f'<td><a href="#{_anchor(s["name"])}">{esc(s["name"])}</a></td>')
        cells.append(f"<td>{_pill(s['verdict'])}</td>")
        cells.append(f"<td>{esc(s['fault'])}</td>")
        cells.append(count("accepted", False))
        cells.append(count("finished", False))
        cells.append(count("failed", False))
        cells.append(count("stuck", True))
        cells.append(count("lost", True))
        cells.append(count("duplicates", False))
        for k in ("p50", "p99", "max"):
            v = r.get(k)
            late = isinstance(v, (int, float)) and isinstance(bound, (int, float)) and v > bound
            cells.append(f'<td class="num{" badcell" if late else ""}">{_num(v, 1)}</td>')
        cells.append(f'<td class="num">{_num(bound, 1)}</td>')
        checks = _checks_cell(s.get("checkers", {}))
        cells.append(f'<td class="checks">{checks}</td>')
        rows.append(f'<tr class="v-{esc(s["verdict"])}">{"".join(cells)}</tr>')
    head = (
        "<tr><th>scenario</th><th>verdict</th><th>fault</th><th>accepted</th><th>finished</th><th>failed</th>"
        "<th>stuck</th><th>lost</th><th>dupl.</th><th>p50 s</th><th>p99 s</th><th>max s</th><th>bound s</th>"
        "<th>checkers</th></tr>"
    )
    return f'<table class="summary"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _checks_cell(checkers: Mapping[str, str]) -> str:
    """Failing and unknown checkers by name; the passing ones as one count (all in the section)."""
    if not checkers:
        return '<span class="pill unk">? no checker ran</span>'
    bad = [_pill(v, k) for k, v in checkers.items() if v != "pass"]
    passed = [k for k, v in checkers.items() if v == "pass"]
    if not bad:
        return _pill("pass", f"all {len(passed)} pass")
    if passed:
        bad.append(f'<span class="pill ok" title="{esc(", ".join(passed))}">✓ {len(passed)} others pass</span>')
    return " ".join(bad)


def _legend() -> str:
    def sw(colour: str, hatch: bool = False, stripe: bool = False) -> str:
        fill = f'<rect width="26" height="11" rx="2" fill="{colour}"/>'
        if hatch:
            fill += (
                '<path d="M0,11 L11,0 M7,11 L18,0 M14,11 L25,0" stroke="#fff" stroke-opacity="0.6" stroke-width="2"/>'
            )
        if stripe:
            fill = (
                '<rect width="26" height="11" fill="#f1f3f5"/>'
                '<path d="M0,0 L11,11 M8,0 L19,11 M16,0 L27,11" stroke="#ced4da" stroke-width="3"/>'
            )
        return f'<svg width="26" height="11" aria-hidden="true">{fill}</svg>'

    items = [
        (sw(COLOURS["finished"]), "finished"),
        (sw(COLOURS["failed"]), "failed (a terminal outcome)"),
        (sw(COLOURS["abandoned"]), "attempt cut short, job handed on"),
        (sw(COLOURS["stuck"]), "stuck at the deadline"),
        (sw(COLOURS["finished"], hatch=True), "hatched: attempt 2 or later"),
        (
            '<svg width="14" height="14" aria-hidden="true"><path d="M7,1 l6,6 l-6,6 l-6,-6 z" fill="#111"/></svg>',
            "recovery: the service requeued or failed the attempt",
        ),
        (
            '<svg width="18" height="14" aria-hidden="true"><line x1="9" y1="0" x2="9" y2="14" stroke="#c92a2a" '
            'stroke-width="2"/></svg>',
            "fault injected",
        ),
        (
            '<svg width="18" height="14" aria-hidden="true"><line x1="9" y1="0" x2="9" y2="14" stroke="#0c8599" '
            'stroke-width="2" stroke-dasharray="3 2"/></svg>',
            "fault healed",
        ),
        (sw("", stripe=True), "fault in effect on that lane (until healed)"),
        ("<b>↻</b>", "a worker started in place of a killed one"),
    ]
    return '<div class="legend">' + "".join(f"<span>{s} {esc(t)}</span>" for s, t in items) + "</div>"


def _trail(job: JobTrack, view: ScenarioView) -> str:
    events = job.events
    skipped = 0
    if len(events) > MAX_TRAIL_EVENTS:
        half = MAX_TRAIL_EVENTS // 2
        skipped = len(events) - 2 * half
        events = events[:half] + events[-half:]
    rows = []
    for i, e in enumerate(events):
        if skipped and i == MAX_TRAIL_EVENTS // 2:
            rows.append(f'<tr><td colspan="3" class="muted">… {skipped} events left out …</td></tr>')
        data = esc(_data_text(e.data))
        rows.append(f'<tr><td class="num">{e.t:.3f}</td><td>{esc(e.kind)}</td><td><code>{data}</code></td></tr>')
    faults = [f for f in view.faults if f["job_id"] == job.job_id]
    beat = None
    started = None
    for e in reversed(job.events):
        if e.kind == STATUS and e.data.get("final"):
            beat = e.data.get("last_heartbeat_at")
            started = e.data.get("started_at")
            break
    if not beat:
        beat = "none recorded by the service"
        worker = _last_worker(job)
        wbeat = _worker_beats(view.diagnose).get(worker or "")
        if wbeat:
            beat += f"; its worker {worker}'s RQ heartbeat at the deadline: {wbeat}"
    why = "never reached finished or failed" if job.job_id in view.stuck else ""
    if job.job_id in view.lost:
        why = "lost: the service no longer knows it"
    elif job.job_id in view.over_bound:
        why = f"recovered in {view.samples[job.job_id]:.2f} s, over the bound"
    recs = view.recoverers.get(job.job_id, [])
    rec_text = (
        "; ".join(f"{r.get('event')} by {r.get('by')} ({r.get('reason')})" for r in recs)
        if recs
        else "no recovery action in the service logs"
    )
    facts = [
        ("why listed", why),
        ("kind", job.kind),
        ("request", job.request_id),
        ("last status", _last_status(job, view.final_t)),
        ("attempts", job.attempts),
        ("last heartbeat", beat),
        ("started at", started),
        ("faults aimed at it", ", ".join(f"{f['label']} at t={f['t']:.2f} s" for f in faults) or "none"),
        ("recovery actions", rec_text),
    ]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v if v is not None else '–')}</dd>" for k, v in facts)
    return (
        f'<details class="trail" id="job-{esc(job.job_id)}" open><summary>job <code>{esc(job.job_id)}</code> · '
        f"{esc(why)}</summary><dl>{dl}</dl>"
        f'<table class="events"><thead><tr><th>t (s)</th><th>kind</th><th>data</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></details>"
    )


def _rows_table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(_cell(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in rows
        if isinstance(r, dict)
    )
    return f'<table class="events"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def _diagnose_html(diagnose: Any) -> str:
    """The key parts of `diagnose-worker --json` (stuck jobs, workers, advice), then all of it."""
    if diagnose is None:
        return ""
    t = diagnose.get("t") if isinstance(diagnose, dict) else None
    when = f" at t={t:.1f} s (the deadline, before healing)" if isinstance(t, (int, float)) else ""
    parts = [f'<div class="diag"><h3>diagnose-worker --json{esc(when)}</h3>']
    report = diagnose.get("report") if isinstance(diagnose, dict) else None
    if isinstance(diagnose, dict) and diagnose.get("error"):
        parts.append(f'<p class="bad">diagnose-worker could not run: {esc(diagnose["error"])}</p>')
    if isinstance(report, dict):
        stuck = report.get("stuck")
        if isinstance(stuck, list) and stuck:
            parts.append(f"<p><b>It reports {len(stuck)} stuck job(s):</b></p>")
            parts.append(_rows_table(stuck, ("job_id", "state", "worker", "attempt", "silent_s", "why")))
        elif isinstance(stuck, list):
            parts.append("<p>It reports no stuck job.</p>")
        workers = report.get("workers")
        if isinstance(workers, list) and workers:
            parts.append("<p><b>Workers:</b></p>")
            parts.append(
                _rows_table(workers, ("name", "state", "fix", "connected", "current_job", "rq_last_heartbeat", "pid"))
            )
        advice = report.get("recommendations")
        if isinstance(advice, list) and advice:
            parts.append("<p><b>Its advice:</b></p><ul>" + "".join(f"<li>{esc(a)}</li>" for a in advice) + "</ul>")
    text = json.dumps(diagnose, indent=1, default=str)
    if len(text) > 60_000:
        text = text[:60_000] + "\n… (cut)"
    parts.append(f"<details><summary>full output</summary><pre>{esc(text)}</pre></details></div>")
    return "".join(parts)


def _worker_beats(diagnose: Any) -> dict[str, str]:
    """worker name -> RQ's last worker heartbeat, from the diagnosis (stock RQ has no job beat)."""
    out: dict[str, str] = {}
    report = diagnose.get("report") if isinstance(diagnose, dict) else None
    workers = report.get("workers") if isinstance(report, dict) else None
    for w in workers if isinstance(workers, list) else []:
        if isinstance(w, dict) and w.get("name"):
            conn = "" if w.get("connected") is None else (", connected" if w["connected"] else ", no Redis connection")
            out[str(w["name"])] = f"{w.get('rq_last_heartbeat') or '–'} ({w.get('state') or '?'}{conn})"
    return out


def _scenario_section(view: ScenarioView, index: int, summary: dict[str, Any], env: dict[str, Any]) -> str:
    s = view.entry
    name = str(s["name"])
    j, r = s["jobs"], s["recovery_s"]
    parts = [f'<section class="scenario v-{esc(s["verdict"])}" id="{_anchor(name)}">']
    parts.append(f"<h2>{_pill(s['verdict'], s['verdict'].upper())} {esc(name)} <small>{esc(s['fault'])}</small></h2>")
    counts = (
        f"{_num(j.get('accepted'))} accepted · {_num(j.get('finished'))} finished · {_num(j.get('failed'))} failed · "
        f"<b{' class=bad' if j.get('stuck') else ''}>{_num(j.get('stuck'))} stuck</b> · "
        f"{_num(j.get('lost'))} lost · {_num(j.get('duplicates'))} re-executed · recovery p50 {_num(r.get('p50'))} s, "
        f"p99 {_num(r.get('p99'))} s, max {_num(r.get('max'))} s against a bound of {_num(s.get('bound_s'))} s"
    )
    parts.append(f'<p class="counts">{counts}</p>')
    parts.append(_totals(view))
    checks = " ".join(_pill(v, k) for k, v in s.get("checkers", {}).items())
    if checks:
        parts.append(f'<p class="checks">{checks}</p>')
    env_used = view.start_note.get("env") or {}
    if env_used:
        parts.append(
            '<p class="muted small">service settings: '
            + ", ".join(f"{esc(k)}={esc(v)}" for k, v in sorted(env_used.items()))
            + "</p>"
        )
    rerun = rerun_command(
        seed=summary.get("seed"),
        fix=str(summary.get("fix")),
        profile=str(env.get("profile") or view.start_note.get("profile") or "ci"),
        backend=str(summary.get("backend") or "local"),
        scenarios=[name],
        repair_cmd=env.get("repair_cmd"),
        redis_auth=env.get("redis_auth"),
    )
    parts.append(f'<p class="small">rerun this scenario: <code class="cmd">{esc(rerun)}</code></p>')
    if view.error:
        parts.append(f'<p class="bad">{esc(view.error)}</p>')
    notes = [
        e
        for e in view.notes
        if any(
            w in str(e.data.get("text"))
            for w in ("not injected", "failed to", "exited on its own", "crashed", "error", "did not answer")
        )
    ]
    if notes:
        items = "".join(f"<li>t={e.t:.2f} s: {esc(e.data.get('text'))}</li>" for e in notes[:30])
        parts.append(f'<div class="notes"><b>Notes</b><ul>{items}</ul></div>')
    if view.history is not None:
        parts.append("<h3>Timeline</h3>")
        parts.append(timeline_svg(view, f"t{index}"))
        parts.append("<h3>Recovery times</h3>")
        never = len(set(view.unrecovered) | set(view.stuck))
        bound = s.get("bound_s")
        parts.append('<div class="histrow">')
        parts.append(
            histogram_svg(list(view.samples.values()), float(bound) if bound is not None else None, never=never)
        )
        parts.append(
            f'<p class="small">{len(view.samples)} job(s) hit by a fault reached finished/failed'
            f"{'' if not never else f'; {never} never did'}. A job's recovery time runs from the last fault that "
            "affected it to its terminal status, as polled by the clients.</p>"
        )
        parts.append("</div>")
    bad = list(dict.fromkeys([*view.stuck, *view.lost, *view.unrecovered, *view.over_bound]))
    if bad:
        parts.append(f"<h3>Jobs that did not recover ({len(bad)})</h3>")
        for job_id in bad[:MAX_TRAILS]:
            job = view.jobs.get(job_id)
            if job is not None:
                parts.append(_trail(job, view))
        if len(bad) > MAX_TRAILS:
            rest = ", ".join(bad[MAX_TRAILS:])
            parts.append(f'<p class="small">{len(bad) - MAX_TRAILS} more without trails: {esc(rest)}</p>')
    parts.append(_diagnose_html(view.diagnose))
    parts.append("</section>")
    return "".join(parts)


def _totals(view: ScenarioView) -> str:
    """The run's totals from its history: jobs terminal, faults injected by kind, recoveries
    (what a soak's verdict rests on); plus the soak's size when it was one."""
    if view.history is None:
        return ""
    accepted = len(view.jobs)
    terminal = sum(1 for j in view.jobs.values() if j.terminal and j.status in TERMINAL_STATUSES)
    share = f" ({100 * terminal / accepted:.1f}%)" if accepted else ""
    by_kind: dict[str, int] = {}
    for f in view.faults:
        by_kind[f["fault"]] = by_kind.get(f["fault"], 0) + 1
    kinds = ", ".join(f"{esc(k)} {n}" for k, n in sorted(by_kind.items()))
    requeued = sum(1 for j in view.jobs.values() for d in j.detections if d.action == "requeued")
    failed = sum(1 for j in view.jobs.values() for d in j.detections if d.action == "failed")
    never = len(set(view.unrecovered) | set(view.stuck))
    text = (
        f"<b>totals</b>: {terminal} of {accepted} jobs terminal{share} · {len(view.lost)} lost · "
        f"{len(view.faults)} faults injected{f' ({kinds})' if kinds else ''} · "
        f"{len(view.samples)} jobs hit by a fault recovered{f', {never} did not' if never else ''} · "
        f"recovery actions seen: {requeued} requeued, {failed} failed"
    )
    soak = view.start_note.get("soak")
    if isinstance(soak, dict):
        text += (
            f"<br>soak: {esc(soak.get('jobs'))} jobs or {esc(soak.get('minutes'))} minutes of submissions, "
            f"whichever came first; the last job was accepted at t={_num(_last_accepted_t(view))} s"
        )
    return f'<p class="counts">{text}</p>'


def _last_accepted_t(view: ScenarioView) -> float | None:
    accepted = [j.accepted_t for j in view.jobs.values() if j.accepted_t is not None]
    return max(accepted) if accepted else None


def _environment(summary: dict[str, Any], env: dict[str, Any], views: Sequence[ScenarioView]) -> str:
    redis_versions = sorted(
        {str(v.start_note.get("redis_version")) for v in views if v.start_note.get("redis_version")}
    )
    pkgs = env.get("packages") or {}
    cores = env.get("cpu_count")
    usable = env.get("cpu_usable")
    rows = [
        ("backend", summary.get("backend")),
        ("fix under test", summary.get("fix")),
        ("seed", summary.get("seed")),
        ("profile", env.get("profile")),
        (
            "service settings (profile)",
            ", ".join(f"{k}={v}" for k, v in sorted((env.get("profile_env") or {}).items())) or None,
        ),
        (
            "recovery bound",
            "per scenario: LIVENESS_TTL + SWEEP_INTERVAL + one clean run of its slowest job + 2 s slack "
            "(unless the scenario sets its own slack)",
        ),
        ("Python", env.get("python")),
        ("Redis server", ", ".join(redis_versions) or None),
        ("Redis auth (--redis-auth)", env.get("redis_auth")),
        *((f"{k} (Python client)" if k == "redis" else k, v) for k, v in pkgs.items()),
        ("platform", env.get("platform")),
        ("CPU cores", f"{cores}" + (f" ({usable} usable)" if usable and usable != cores else "") if cores else None),
        ("memory", _bytes(env.get("memory_bytes")) if env.get("memory_bytes") else None),
        ("repair command", env.get("repair_cmd")),
    ]
    if not env:
        rows.append(("note", f"no {ENV_FILE} in this run: versions and machine unknown"))
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v if v is not None else '–')}</td></tr>" for k, v in rows)
    names = [str(s["name"]) for s in summary.get("scenarios", [])] if env.get("scenarios_selected") else []
    cmd = rerun_command(
        seed=summary.get("seed"),
        fix=str(summary.get("fix")),
        profile=str(env.get("profile") or "ci"),
        backend=str(summary.get("backend") or "local"),
        scenarios=names,
        repair_cmd=env.get("repair_cmd"),
        redis_auth=env.get("redis_auth"),
    )
    return (
        '<section id="env"><h2>Environment and how to rerun</h2>'
        f'<p>Run the same workload and fault schedule again:</p><pre class="cmd">{esc(cmd)}</pre>'
        '<p class="small">The seed fixes each scenario\'s jobs and fault schedule; timings still vary with the '
        "machine.</p>"
        f'<table class="env"><tbody>{body}</tbody></table></section>'
    )


def _page(summary: dict[str, Any], env: dict[str, Any], views: list[ScenarioView]) -> str:
    template = string.Template(TEMPLATE.read_text(encoding="utf-8"))
    verdict = "PASS"
    if any(s.get("verdict") == "fail" for s in summary.get("scenarios", [])):
        verdict = "FAIL"
    elif any(s.get("verdict") == "unknown" for s in summary.get("scenarios", [])) or not summary.get("scenarios"):
        verdict = "UNKNOWN"
    overview = (
        "<h2>Recovery time per scenario</h2>" + overview_svg(views)
        if views
        else '<p class="muted">no scenarios in this run</p>'
    )
    sections = "".join(_scenario_section(v, i, summary, env) for i, v in enumerate(views))
    toc = " · ".join(
        f'<a href="#{_anchor(str(v.entry["name"]))}" class="toc-{esc(v.entry["verdict"])}">{esc(v.entry["name"])}</a>'
        for v in views
    )
    return template.substitute(
        title=esc(f"{verdict} · chaos run {summary.get('run_id')} · fix={summary.get('fix')}"),
        banner=_banner(summary, views),
        table=_table(summary),
        overview=overview,
        legend=_legend(),
        toc=toc,
        scenarios=sections,
        environment=_environment(summary, env, views),
        generated=esc(datetime.now(UTC).isoformat(timespec="seconds")),
    )


def render(report_dir: str | Path) -> Path:
    """Write ``<report_dir>/index.html`` from the run saved there; returns its path."""
    report_dir = Path(report_dir)
    summary_path = report_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise ReportError(f"{report_dir} holds no {SUMMARY_FILE}: not a harness run directory")
    try:
        summary = _load_json(summary_path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{summary_path} cannot be read: {exc}") from exc
    env: dict[str, Any] = {}
    env_path = report_dir / ENV_FILE
    if env_path.is_file():
        try:
            env = _load_json(env_path)
        except (OSError, ValueError):
            env = {}
    views = [_read_scenario(report_dir, entry) for entry in summary.get("scenarios", [])]
    page = _page(summary, env, views)
    out = report_dir / REPORT_FILE
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
