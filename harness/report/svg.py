"""The report's charts as inline SVG: the timeline of a scenario, its recovery-time histogram,
and the overview of every scenario against its bound.

No JavaScript: tooltips are native `<title>` elements. The geometry is plain Python; every datum
that goes into the markup passes through markupsafe's `escape`, and each chart is returned as
`Markup`, so the page's autoescaping templates insert it as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from harness.report.formatting import anchor, data_text, human_bytes, short
from harness.report.model import JobTrack, ScenarioView, Segment, assign_rows

__all__ = ["COLOURS", "INSTANT_FAULTS", "OUTCOME_TEXT", "histogram_svg", "overview_svg", "timeline_svg"]

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

#: A vertical mark on the timeline: t, css class (inject | heal | final), label, the fault.
_Mark = tuple[float, str, str, dict[str, Any]]


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


class _Timeline:
    """The layout of one scenario's timeline: time scale, label rows above, lanes below."""

    width, left, right = 1180.0, 190.0, 24.0
    row_h, lane_pad = 13.0, 5.0

    def __init__(self, view: ScenarioView, uid: str) -> None:
        self.view, self.uid = view, uid
        self.plot_w = self.width - self.left - self.right
        span = max(view.end_t, 1.0)
        self.step = _nice_step(span, 12)
        self.t_max = math.ceil(span / self.step) * self.step
        self.marks = self._marks()
        self.labels, n_rows = self._stack_labels()
        self.top = 22 + 16 * n_rows
        self.lane_y: dict[str, tuple[float, float]] = {}  # lane -> (y, height)
        y: float = self.top
        by_lane: dict[str, list[Segment]] = {key: [] for key, _ in view.lanes}
        for job in view.jobs.values():
            for seg in job.segments:
                by_lane.setdefault(seg.lane, []).append(seg)
        for key, _label in view.lanes:
            h = assign_rows(by_lane.get(key, [])) * self.row_h + 2 * self.lane_pad
            self.lane_y[key] = (y, h)
            y += h
        self.bottom = y

    def x(self, t: float) -> float:
        return self.left + self.plot_w * max(0.0, min(t, self.t_max)) / self.t_max

    def row_y(self, lane: str, row: int) -> float:
        """The top of sub-row `row` of `lane`."""
        return self.lane_y[lane][0] + self.lane_pad + row * self.row_h

    def _marks(self) -> list[_Mark]:
        view = self.view
        marks: list[_Mark] = []
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
        return marks

    def _stack_labels(self) -> tuple[list[tuple[float, int, str, str]], int]:
        """Mark labels above the plot, stacked in rows so that they never overlap."""
        label_rows: list[float] = []
        labels: list[tuple[float, int, str, str]] = []  # x, row, text, class
        for t, cls, text, _f in sorted(self.marks, key=lambda m: m[0]):
            x0 = self.x(t) - 3
            w = _text_width(text)
            if x0 + w > self.width - 2:
                x0 = self.width - 2 - w
            for i, end in enumerate(label_rows):
                if x0 >= end + 4:
                    label_rows[i] = x0 + w
                    row = i
                    break
            else:
                label_rows.append(x0 + w)
                row = len(label_rows) - 1
            labels.append((x0, row, text, cls))
        return labels, len(label_rows)

    def svg(self) -> Markup:
        height = self.bottom + 34
        parts: list[str] = [
            f'<svg class="timeline" viewBox="0 0 {self.width:.0f} {height:.0f}" width="100%" '
            f'role="img" aria-label="timeline of {escape(self.view.entry["name"])}">',
            _svg_defs(self.uid),
        ]
        parts += self._lanes()
        parts += self._axis()
        parts += self._bands()
        for job in self.view.jobs.values():
            parts += self._bars(job)
        parts += self._detections()
        parts += self._lines()
        parts.append("</svg>")
        return Markup("".join(parts))

    def _lanes(self) -> list[str]:
        parts = []
        for i, (key, label) in enumerate(self.view.lanes):
            y, h = self.lane_y[key]
            fill = "#f6f7f9" if i % 2 == 0 else "#ffffff"
            parts.append(f'<rect x="0" y="{y:.1f}" width="{self.width:.0f}" height="{h:.1f}" fill="{fill}"/>')
            parts.append(
                f'<text x="{self.left - 8:.0f}" y="{y + h / 2 + 4:.1f}" text-anchor="end" class="lane">'
                f"{escape(label)}</text>"
            )
        return parts

    def _axis(self) -> list[str]:
        top, bottom = self.top, self.bottom
        parts = []
        t = 0.0
        while t <= self.t_max + 1e-9:
            gx = self.x(t)
            parts.append(f'<line x1="{gx:.1f}" y1="{top:.1f}" x2="{gx:.1f}" y2="{bottom:.1f}" class="grid"/>')
            parts.append(f'<text x="{gx:.1f}" y="{bottom + 14:.1f}" text-anchor="middle" class="tick">{t:g}</text>')
            t += self.step
        parts.append(
            f'<text x="{self.left + self.plot_w / 2:.1f}" y="{bottom + 29:.1f}" text-anchor="middle" class="axis">'
            "seconds since the stack was ready</text>"
        )
        parts.append(
            f'<line x1="{self.left:.1f}" y1="{bottom:.1f}" x2="{self.width - self.right:.1f}" y2="{bottom:.1f}" '
            'class="axisline"/>'
        )
        return parts

    def _bands(self) -> list[str]:
        """Faults that last (a paused worker, Redis down) as a striped band over their lane."""
        parts = []
        for f in self.view.faults:
            if f["target"] in self.lane_y and f["fault"] not in INSTANT_FAULTS:
                ly, lh = self.lane_y[f["target"]]
                end = f["end"] if f["end"] is not None else self.view.end_t
                bx, bw = self.x(f["t"]), max(2.0, self.x(end) - self.x(f["t"]))
                tip = f"{f['label']} on {f['target']}: t={f['t']:.2f}–{end:.2f} s"
                parts.append(
                    f'<rect x="{bx:.1f}" y="{ly:.1f}" width="{bw:.1f}" height="{lh:.1f}" '
                    f'fill="url(#stripe-{self.uid})" opacity="0.9"><title>{escape(tip)}</title></rect>'
                )
        return parts

    def _tip(self, job: JobTrack, seg: Segment) -> str:
        view = self.view
        lines = [
            f"job {job.job_id}",
            f"kind {job.kind or '?'} · attempt {seg.attempt or '–'} of {job.attempts or '?'} on {seg.lane}",
            f"{OUTCOME_TEXT.get(seg.outcome, seg.outcome)} · t={seg.start:.2f}–{seg.end:.2f} s "
            f"({seg.end - seg.start:.2f} s{'' if seg.start_seen else ', start between two polls'})",
            f"job status: {job.status}",
        ]
        if job.peak_rss:
            lines.append(f"peak RSS {human_bytes(job.peak_rss)}")
        if job.job_id in view.samples:
            lines.append(f"recovered {view.samples[job.job_id]:.2f} s after the fault")
        return "\n".join(lines)

    def _bars(self, job: JobTrack) -> list[str]:
        """A bar per attempt of `job` (hatched from attempt 2, an arrow head when stuck), then
        dotted connectors between its consecutive attempts."""
        row_h = self.row_h
        parts = []
        for seg in job.segments:
            if seg.lane not in self.lane_y:
                continue
            by = self.row_y(seg.lane, seg.row) + 1
            bx = self.x(seg.start)
            bw = max(2.5, self.x(seg.end) - bx)
            colour = COLOURS.get(seg.outcome, "#999")
            cls = "bar stuckbar" if seg.outcome == "stuck" else "bar"
            parts.append(
                f'<g class="{cls}"><title>{escape(self._tip(job, seg))}</title>'
                f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" height="{row_h - 2:.1f}" rx="2" fill="{colour}"/>'
            )
            if seg.attempt >= 2:
                parts.append(
                    f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" height="{row_h - 2:.1f}" rx="2" '
                    f'fill="url(#hatch-{self.uid})"/>'
                )
            if seg.outcome == "stuck":
                ex = bx + bw
                parts.append(
                    f'<path d="M{ex:.1f},{by - 1:.1f} l6,{(row_h) / 2 - 0.5:.1f} l-6,{(row_h) / 2 - 0.5:.1f} z" '
                    f'fill="{colour}"/>'
                )
            label = short(job.job_id) + (f" #{seg.attempt}" if seg.attempt >= 2 else "")
            label += " STUCK" if seg.outcome == "stuck" else ""
            if bw > len(label) * 5.8 + 10:  # only where it fits inside the bar
                parts.append(
                    f'<text x="{bx + 4:.1f}" y="{by + row_h - 4.5:.1f}" class="barlabel">{escape(label)}</text>'
                )
            parts.append("</g>")
        for a, b in zip(job.segments, job.segments[1:], strict=False):
            if a.lane in self.lane_y and b.lane in self.lane_y:
                ay = self.row_y(a.lane, a.row) + row_h / 2
                by2 = self.row_y(b.lane, b.row) + row_h / 2
                tip = f"job {job.job_id}: attempt {a.attempt} → {b.attempt}"
                parts.append(
                    f'<path d="M{self.x(a.end):.1f},{ay:.1f} L{self.x(b.start):.1f},{by2:.1f}" class="handover">'
                    f"<title>{escape(tip)}</title></path>"
                )
        return parts

    def _detections(self) -> list[str]:
        """A diamond where the service requeued or failed an attempt, with who did it."""
        parts = []
        for job in self.view.jobs.values():
            for det in job.detections:
                if det.lane not in self.lane_y:
                    continue
                seg_rows = [s for s in job.segments if s.lane == det.lane and abs(s.end - det.t) < 1e-6]
                cy = self.row_y(det.lane, seg_rows[0].row if seg_rows else 0) + self.row_h / 2
                cx = self.x(det.t)
                tip = f"t={det.t:.2f} s: job {job.job_id} {det.action}\n{det.reason}\nby: {det.by or 'not reported'}"
                parts.append(
                    f'<g class="detect"><title>{escape(tip)}</title>'
                    f'<path d="M{cx:.1f},{cy - 6:.1f} l6,6 l-6,6 l-6,-6 z" fill="#111" stroke="#fff" '
                    'stroke-width="1"/></g>'
                )
        return parts

    def _lines(self) -> list[str]:
        """Fault, heal and final-phase lines across the lanes, then their labels above."""
        parts = []
        for t, cls, text, f in self.marks:
            mx = self.x(t)
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
                tip += "\n" + data_text(extra)
            parts.append(
                f'<line x1="{mx:.1f}" y1="{self.top - 4:.1f}" x2="{mx:.1f}" y2="{self.bottom:.1f}" class="{cls}">'
                f"<title>{escape(tip)}</title></line>"
            )
        for lx, row, text, cls in self.labels:
            parts.append(f'<text x="{lx + 4:.1f}" y="{16 + 16 * row:.1f}" class="lbl-{cls}">{escape(text)}</text>')
        return parts


def timeline_svg(view: ScenarioView, uid: str) -> Markup:
    """One lane per worker (+ Redis/API/never-started); a bar per attempt; fault and heal lines.

    `uid` keeps the chart's pattern ids apart from the other timelines on the page."""
    return _Timeline(view, uid).svg()


def histogram_svg(samples: Sequence[float], bound: float | None, *, never: int = 0) -> Markup:
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
    return Markup("".join(parts))


def overview_svg(views: Sequence[ScenarioView]) -> Markup:
    """Every scenario's recovery times on one axis, each against its own bound."""
    width = 1180.0
    left, right = 190.0, 90.0
    row_h = 24.0
    top = 8.0
    plot_w = width - left - right
    hi = 1.0
    for v in views:
        hi = max([hi, *v.samples.values()])
        bound = v.entry["bound_s"]
        if bound is not None:
            hi = max(hi, float(bound))
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
            f'<a href="#{anchor(name)}"><text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" class="lane">'
            f"{escape(name)}</text></a>"
        )
        bound = v.entry.get("bound_s")
        if isinstance(bound, (int, float)):
            bx = x(float(bound))
            parts.append(
                f'<line x1="{bx:.1f}" y1="{y + 3:.1f}" x2="{bx:.1f}" y2="{y + row_h - 3:.1f}" class="boundtick">'
                f"<title>{escape(name)}: bound {bound:g} s</title></line>"
            )
        for job_id, s in sorted(v.samples.items(), key=lambda kv: kv[1]):
            late = isinstance(bound, (int, float)) and s > bound
            parts.append(
                f'<circle cx="{x(s):.1f}" cy="{cy:.1f}" r="4" class="{"dot late" if late else "dot"}">'
                f"<title>{escape(f'{name}: job {job_id} recovered in {s:.2f} s')}</title></circle>"
            )
        never = len(set(v.unrecovered) | set(v.stuck))
        if never:
            parts.append(
                f'<text x="{nx + 30:.1f}" y="{cy + 4:.1f}" text-anchor="middle" class="never">✗ {never}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


# -- page sections -------------------------------------------------------------------------
