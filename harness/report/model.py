"""The report's view model: what a run directory holds, read into jobs, attempts and lanes.

    read_run(report_dir) -> RunView        summary, env and one ScenarioView per scenario

A run directory (what `harness run` leaves behind):

    <report-dir>/summary.json                    verdicts and counts (harness.report.summary)
    <report-dir>/env.json                        versions, machine, settings (harness.report.environment)
    <report-dir>/<scenario>/history.jsonl        every event of the scenario (harness.workload.history)
    <report-dir>/<scenario>/diagnose.json        diagnose-worker --json at the deadline, if jobs stuck
    <report-dir>/<scenario>/logs/*.log           service logs: who recovered a job (job_requeued ...)

Everything the page shows is derived here, from data alone, so that svg.py and html.py only lay
it out. A scenario whose history is missing or malformed still yields a view (with `error`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checkers import AllTerminal, NoLost, RecoveryTime
from harness.defaults import DIAGNOSE_FILE, HISTORY_FILE, TERMINAL_STATUSES
from harness.report.environment import ENV_FILE
from harness.report.summary import SUMMARY_FILE, ScenarioEntry, Summary, read_summary
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
    "DIAGNOSE_FILE",
    "HISTORY_FILE",
    "Detection",
    "JobTrack",
    "ReportError",
    "RunView",
    "ScenarioView",
    "Segment",
    "assign_rows",
    "read_run",
    "read_scenario",
]


class ReportError(RuntimeError):
    """The directory does not hold a run (no summary.json) or it cannot be read."""


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
    """One accepted job: its events, attempts (segments) and the recoveries seen on it."""

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

    def last_worker(self) -> str | None:
        for e in reversed(self.events):
            if e.kind in (STATUS, TERMINAL) and e.data.get("worker"):
                return str(e.data["worker"])
        return None

    def last_status(self, final_t: float | None = None) -> str:
        """How the job was last seen before the run stopped watching, and what the final read said."""
        seen = [e for e in self.events if e.kind in (STATUS, TERMINAL)]
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

    def final_read(self) -> dict[str, Any]:
        """The data of the read after the heal (`final=True`), or {} when there was none."""
        for e in reversed(self.events):
            if e.kind == STATUS and e.data.get("final"):
                return dict(e.data)
        return {}


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


@dataclass
class ScenarioView:
    """One scenario as the page shows it: its summary entry and what its files say."""

    entry: ScenarioEntry
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

    @property
    def never_recovered(self) -> int:
        """Jobs hit by a fault (or judged stuck) that never reached finished/failed."""
        return len(set(self.unrecovered) | set(self.stuck))

    @property
    def bad_jobs(self) -> list[str]:
        """Every job that did not recover, once, in the order stuck, lost, unrecovered, late."""
        return list(dict.fromkeys([*self.stuck, *self.lost, *self.unrecovered, *self.over_bound]))

    @property
    def last_accepted_t(self) -> float | None:
        accepted = [j.accepted_t for j in self.jobs.values() if j.accepted_t is not None]
        return max(accepted) if accepted else None

    def last_status(self, job_id: str) -> str:
        job = self.jobs.get(job_id)
        return "never" if job is None else job.last_status(self.final_t)

    def worker_beats(self) -> dict[str, str]:
        """worker name -> RQ's last worker heartbeat, from the diagnosis (stock RQ has no job beat)."""
        out: dict[str, str] = {}
        report = self.diagnose.get("report") if isinstance(self.diagnose, dict) else None
        workers = report.get("workers") if isinstance(report, dict) else None
        for w in workers if isinstance(workers, list) else []:
            if isinstance(w, dict) and w.get("name"):
                conn = (
                    "" if w.get("connected") is None else (", connected" if w["connected"] else ", no Redis connection")
                )
                out[str(w["name"])] = f"{w.get('rq_last_heartbeat') or '–'} ({w.get('state') or '?'}{conn})"
        return out


@dataclass
class RunView:
    """A whole run: summary.json (checked), env.json ({} if absent or unreadable), the scenarios."""

    summary: Summary
    env: dict[str, Any]
    scenarios: list[ScenarioView]


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


def assign_rows(segments: list[Segment]) -> int:
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


def read_scenario(report_dir: Path, entry: ScenarioEntry) -> ScenarioView:
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


def read_run(report_dir: str | Path) -> RunView:
    """Everything the page needs from a run directory; ReportError if it holds no readable run."""
    report_dir = Path(report_dir)
    summary_path = report_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise ReportError(f"{report_dir} holds no {SUMMARY_FILE}: not a harness run directory")
    try:
        summary = read_summary(summary_path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{summary_path} cannot be read: {exc}") from exc
    env: dict[str, Any] = {}
    env_path = report_dir / ENV_FILE
    if env_path.is_file():
        try:
            env = _load_json(env_path)
        except (OSError, ValueError):
            env = {}
    return RunView(summary, env, [read_scenario(report_dir, entry) for entry in summary["scenarios"]])
