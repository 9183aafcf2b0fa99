"""The HTML recovery report: ``<report-dir>/index.html`` from summary.json and the histories.

    render(report_dir) -> Path          (harness report DIR; the plugin calls it after a run)

One self-contained file that opens from disk: inline CSS, charts as inline SVG (native
``<title>`` tooltips, no JavaScript). The markup is Jinja2 templates (``templates/*.html``,
package data) with autoescaping, so every datum is escaped where it is inserted; this module
only decides what each part says, from the view model (harness.report.model).

The page: a verdict banner, the scenario table, recovery times against their bounds, then per
scenario a timeline (a lane per worker, plus Redis / API for their faults; a bar per attempt of
a job; faults, heals and detections as markers), the recovery-time histogram, and for every job
that did not recover its full event trail, its last heartbeat and the diagnosis.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from harness.defaults import (
    MAX_BANNER_STUCK,
    MAX_DIAGNOSE_CHARS,
    MAX_NOTES,
    MAX_TRAIL_EVENTS,
    MAX_TRAILS,
    REPORT_FILE,
    TERMINAL_STATUSES,
)
from harness.report.environment import ENV_FILE, rerun_command
from harness.report.formatting import anchor, cell, data_text, human_bytes, num
from harness.report.model import JobTrack, RunView, ScenarioView, read_run
from harness.report.svg import COLOURS, histogram_svg, overview_svg, timeline_svg

__all__ = ["REPORT_FILE", "page", "render"]

#: Words that make a history note worth showing above a scenario's timeline.
_NOTE_WORDS = (
    "not injected",
    "failed to",
    "exited on its own",
    "crashed",
    "error",
    "did not answer",
    "redis memory",
    "zombies",
)

_JINJA = Environment(
    loader=PackageLoader("harness.report"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_JINJA.filters.update(num=num, bytes=human_bytes, anchor=anchor, cell=cell)


def _text(value: Any) -> str:
    """A datum as the page shows it in running text: nothing for null."""
    return "" if value is None else str(value)


def _plural(n: int) -> str:
    return "s" if n != 1 else ""


def _banner(run: RunView) -> dict[str, Any]:
    """The verdict in one line, the counts behind it, and the stuck jobs by id."""
    scenarios, views = run.summary["scenarios"], run.scenarios
    failing = [s for s in scenarios if s["verdict"] == "fail"]
    unknown = [s for s in scenarios if s["verdict"] == "unknown"]
    stuck = sum(int(s["jobs"].get("stuck") or 0) for s in scenarios)
    lost = sum(int(s["jobs"].get("lost") or 0) for s in scenarios)
    accepted = sum(int(s["jobs"].get("accepted") or 0) for s in scenarios)
    injected = sum(len(v.faults) for v in views)
    n = len(scenarios)
    if failing:
        cls = "bad"
        head = f"FAIL: {len(failing)} of {n} scenario{_plural(n)} failed"
        bits = [f"{stuck} job{_plural(stuck)} stuck", f"{lost} lost", f"of {accepted} accepted"]
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
        worst = [m for s in scenarios if (m := s["recovery_s"]["max"]) is not None]
        head = f"PASS: all {n} scenario{_plural(n)} recovered every job"
        sub = f"{accepted} jobs accepted, {accepted} terminal (100%), 0 stuck, 0 lost · {injected} faults injected" + (
            f" · slowest recovery {max(worst):.1f} s, every one within its bound" if worst else ""
        )
    stuck_jobs = [
        {"job_id": j, "scenario": v.entry["name"], "status": v.last_status(j)} for v in views for j in v.stuck
    ]
    return {
        "cls": cls,
        "head": head,
        "sub": sub,
        "stuck": stuck_jobs[:MAX_BANNER_STUCK],
        "more": max(0, len(stuck_jobs) - MAX_BANNER_STUCK),
    }


def _rerun(run: RunView, scenarios: list[str], profile: str) -> str:
    summary, env = run.summary, run.env
    return rerun_command(
        seed=summary["seed"],
        fix=str(summary["fix"]),
        profile=profile,
        backend=str(summary["backend"] or "local"),
        scenarios=scenarios,
        repair_cmd=env.get("repair_cmd"),
        redis_auth=env.get("redis_auth"),
    )


def _totals(view: ScenarioView) -> dict[str, Any] | None:
    """The run's totals from its history: jobs terminal, faults injected by kind, recoveries
    (what a soak's verdict rests on); plus the soak's size when it was one."""
    if view.history is None:
        return None
    by_kind: dict[str, int] = {}
    for f in view.faults:
        by_kind[f["fault"]] = by_kind.get(f["fault"], 0) + 1
    actions = [d.action for j in view.jobs.values() for d in j.detections]
    accepted = len(view.jobs)
    terminal = sum(1 for j in view.jobs.values() if j.terminal and j.status in TERMINAL_STATUSES)
    soak = view.start_note.get("soak")
    return {
        "accepted": accepted,
        "terminal": terminal,
        "share": f" ({100 * terminal / accepted:.1f}%)" if accepted else "",
        "by_kind": sorted(by_kind.items()),
        "requeued": actions.count("requeued"),
        "failed": actions.count("failed"),
        "soak": {k: _text(soak.get(k)) for k in ("jobs", "minutes")} if isinstance(soak, dict) else None,
    }


def _trail(job: JobTrack, view: ScenarioView) -> dict[str, Any]:
    """One unrecovered job: why it is listed, the facts a reader asks first, its events."""
    events: list[Any] = list(job.events)
    if len(events) > MAX_TRAIL_EVENTS:
        half = MAX_TRAIL_EVENTS // 2
        events = [*events[:half], len(events) - 2 * half, *events[-half:]]  # the int: events left out
    final = job.final_read()
    beat, started = final.get("last_heartbeat_at"), final.get("started_at")
    if not beat:
        beat = "none recorded by the service"
        worker = job.last_worker()
        wbeat = view.worker_beats().get(worker or "")
        if wbeat:
            beat += f"; its worker {worker}'s RQ heartbeat at the deadline: {wbeat}"
    why = "never reached finished or failed" if job.job_id in view.stuck else ""
    if job.job_id in view.lost:
        why = "lost: the service no longer knows it"
    elif job.job_id in view.over_bound:
        why = f"recovered in {view.samples[job.job_id]:.2f} s, over the bound"
    recs = view.recoverers.get(job.job_id, [])
    faults = [f for f in view.faults if f["job_id"] == job.job_id]
    facts = [
        ("why listed", why),
        ("kind", job.kind),
        ("request", job.request_id),
        ("last status", job.last_status(view.final_t)),
        ("attempts", job.attempts),
        ("last heartbeat", beat),
        ("started at", started),
        ("faults aimed at it", ", ".join(f"{f['label']} at t={f['t']:.2f} s" for f in faults) or "none"),
        (
            "recovery actions",
            "; ".join(f"{r.get('event')} by {r.get('by')} ({r.get('reason')})" for r in recs)
            if recs
            else "no recovery action in the service logs",
        ),
    ]
    rows = [e if isinstance(e, int) else {"t": e.t, "kind": e.kind, "data": data_text(e.data)} for e in events]
    return {"job_id": job.job_id, "why": why, "facts": facts, "rows": rows}


def _diagnose(diagnose: Any) -> dict[str, Any] | None:
    """The key parts of `diagnose-worker --json` (stuck jobs, workers, advice), then all of it."""
    if diagnose is None:
        return None
    d = diagnose if isinstance(diagnose, dict) else {}
    t = d.get("t")
    report = d.get("report")
    if not isinstance(report, dict):
        report = {}
    text = json.dumps(diagnose, indent=1, default=str)
    if len(text) > MAX_DIAGNOSE_CHARS:
        text = text[:MAX_DIAGNOSE_CHARS] + "\n… (cut)"

    def listed(key: str) -> list[Any] | None:
        value = report.get(key)
        return value if isinstance(value, list) else None

    return {
        "when": f" at t={t:.1f} s (the deadline, before healing)" if isinstance(t, (int, float)) else "",
        "error": d.get("error"),
        "stuck": listed("stuck"),
        "workers": listed("workers"),
        "advice": listed("recommendations"),
        "text": text,
    }


def _scenario(view: ScenarioView, index: int, run: RunView) -> dict[str, Any]:
    name = view.entry["name"]
    bound = view.entry["bound_s"]
    bad = view.bad_jobs
    profile = str(run.env.get("profile") or view.start_note.get("profile") or "ci")
    charts = None
    if view.history is not None:
        charts = {
            "timeline": timeline_svg(view, f"t{index}"),
            "histogram": histogram_svg(
                list(view.samples.values()), float(bound) if bound is not None else None, never=view.never_recovered
            ),
        }
    return {
        "view": view,
        "s": view.entry,
        "totals": _totals(view),
        "env_used": sorted((view.start_note.get("env") or {}).items()),
        "rerun": _rerun(run, [name], profile),
        "notes": [
            (e.t, _text(e.data.get("text")))
            for e in view.notes
            if any(w in str(e.data.get("text")) for w in _NOTE_WORDS)
        ][:MAX_NOTES],
        "charts": charts,
        "bad": bad,
        "trails": [_trail(view.jobs[j], view) for j in bad[:MAX_TRAILS] if j in view.jobs],
        "untrailed": bad[MAX_TRAILS:],
        "diagnose": _diagnose(view.diagnose),
    }


def _environment(run: RunView) -> dict[str, Any]:
    """What the run ran on, and the command that repeats it."""
    summary, env = run.summary, run.env
    redis_versions = sorted(
        {str(v.start_note.get("redis_version")) for v in run.scenarios if v.start_note.get("redis_version")}
    )
    pkgs = env.get("packages") or {}
    cores = env.get("cpu_count")
    usable = env.get("cpu_usable")
    rows = [
        ("backend", summary["backend"]),
        ("fix under test", summary["fix"]),
        ("seed", summary["seed"]),
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
        ("memory", human_bytes(env.get("memory_bytes")) if env.get("memory_bytes") else None),
        ("repair command", env.get("repair_cmd")),
    ]
    if not env:
        rows.append(("note", f"no {ENV_FILE} in this run: versions and machine unknown"))
    names = [s["name"] for s in summary["scenarios"]] if env.get("scenarios_selected") else []
    return {"rows": rows, "cmd": _rerun(run, names, str(env.get("profile") or "ci"))}


def page(run: RunView) -> str:
    """The whole page for a run, as one HTML string."""
    scenarios = run.summary["scenarios"]
    verdict = "PASS"
    if any(s["verdict"] == "fail" for s in scenarios):
        verdict = "FAIL"
    elif any(s["verdict"] == "unknown" for s in scenarios) or not scenarios:
        verdict = "UNKNOWN"
    return _JINJA.get_template("report.html").render(
        title=f"{verdict} · chaos run {run.summary['run_id']} · fix={run.summary['fix']}",
        summary=run.summary,
        banner=_banner(run),
        overview=overview_svg(run.scenarios) if run.scenarios else None,
        colours=COLOURS,
        scenarios=[_scenario(v, i, run) for i, v in enumerate(run.scenarios)],
        environment=_environment(run),
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def render(report_dir: str | Path) -> Path:
    """Write ``<report_dir>/index.html`` from the run saved there; returns its path."""
    report_dir = Path(report_dir)
    text = page(read_run(report_dir))
    out = report_dir / REPORT_FILE
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
