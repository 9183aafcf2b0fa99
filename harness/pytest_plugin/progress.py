"""Progress of a chaos run in the terminal: scenario n of m, jobs ended, faults injected, elapsed.

On a terminal one live line is redrawn twice a second while a scenario runs, then replaced by
the scenario's result line; when stdout is not a terminal (CI logs, a pipe) the same facts come
as plain lines: one when a scenario starts, one every `PROGRESS_PLAIN_EVERY_S` while it runs, one at the
end. The plugin owns one `Progress` per session and feeds it pytest's run-test hooks plus the
live `History` of each scenario (from `run_scenario(on_history=...)`).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import pytest

from harness.defaults import PROGRESS_LIVE_EVERY_S, PROGRESS_PLAIN_EVERY_S
from harness.workload.history import FAULT_INJECTED, NOTE, TERMINAL, History

__all__ = ["Progress", "ProgressPlugin"]


def _fmt_s(value: Any) -> str:
    return "–" if value is None else f"{float(value):.1f}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


class Progress:
    """Feeds a terminal writer; every method is safe to call from the runner's thread."""

    def __init__(
        self,
        *,
        total: int,
        out: TextIO,
        live: bool,
        colour: bool = False,
        before_line: Callable[[], None] = lambda: None,
        columns: Callable[[], int] = lambda: shutil.get_terminal_size((100, 20)).columns,
    ) -> None:
        """`out` must bypass pytest's output capture (the plugin hands a duplicate of the
        terminal's file descriptor); `before_line` flushes pytest's own writer so that lines
        keep their order."""
        self.total = total
        self._out = out
        self._before_line = before_line
        self.live = live
        self.colour = colour
        self._columns = columns
        self._lock = threading.Lock()
        self._session_t0 = time.monotonic()
        self.index = 0
        self.name = ""
        self._t0 = 0.0
        self._history: History | None = None
        self._result: Any = None
        self._outcome: str | None = None
        self._note = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False

    # -- fed by the plugin --------------------------------------------------------------------

    def start(self, name: str) -> None:
        self.stop_ticker()
        with self._lock:
            self.index += 1
            self.name = name
            self._t0 = time.monotonic()
            self._history = None
            self._result = None
            self._outcome = None
            self._note = ""
        if not self.live:
            self._line(f"[{self.index}/{self.total}] {name}: started")
        else:
            self._before_line()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="chaos-progress", daemon=True)
        self._thread.start()

    def attach(self, history: History, *, name: str | None = None) -> None:
        """Follow this run's history; its start note carries the plan (see `_planned`)."""
        with self._lock:
            self._history = history
            if name:
                self.name = name

    def set_result(self, result: Any) -> None:
        with self._lock:
            self._result = result

    def set_outcome(self, outcome: str) -> None:
        with self._lock:
            if self._outcome in (None, "passed"):
                self._outcome = outcome

    def set_note(self, text: str) -> None:
        with self._lock:
            self._note = text

    def finish(self) -> None:
        """The scenario's test is over (setup, call, teardown): its result line."""
        self.stop_ticker()
        self._clear()
        self._line(self.result_line(), markup=self._markup())

    # -- lines --------------------------------------------------------------------------------

    def _planned(self) -> tuple[int | str | None, int | None]:
        """Planned jobs and faults, from the run's own start note (a soak names its job target
        and no fault count: its nemesis runs while it submits). None before the note is out."""
        with self._lock:
            history = self._history
        if history is not None and len(history):
            first = history.events[0]
            if first.kind == NOTE and "planned_jobs" in first.data:
                return first.data.get("planned_jobs"), first.data.get("planned_faults")
        return None, None

    def counts(self) -> dict[str, int]:
        with self._lock:
            history = self._history
        if history is None:
            return {"accepted": 0, "ended": 0, "faults": 0}
        events = history.events
        ended = {e.job_id for e in events if e.kind == TERMINAL}
        faults = sum(1 for e in events if e.kind == FAULT_INJECTED)
        return {"accepted": len(history.jobs()), "ended": len(ended), "faults": faults}

    def status_line(self) -> str:
        c = self.counts()
        planned_jobs, planned_faults = self._planned()
        planned = planned_jobs if planned_jobs is not None else "?"
        sched = f"/{planned_faults}" if planned_faults is not None else ""
        elapsed = time.monotonic() - self._t0
        phase = "starting the stack" if self._history is None else f"jobs {c['ended']}/{planned} ended"
        return (
            f"[{self.index}/{self.total}] {self.name}  {elapsed:3.0f} s · {phase} · "
            f"faults {c['faults']}{sched} injected · run {_clock(time.monotonic() - self._session_t0)}"
        )

    def result_line(self) -> str:
        elapsed = time.monotonic() - self._t0
        r = self._result
        outcome = (self._outcome or "?").upper()
        if r is not None:
            verdict = str(getattr(r, "verdict", "?")).upper()
            jobs = getattr(r, "jobs", {}) or {}
            rec = getattr(r, "recovery_s", {}) or {}
            c = self.counts()
            ended = (jobs.get("finished") or 0) + (jobs.get("failed") or 0)
            planned_faults = self._planned()[1]
            sched = f"/{planned_faults}" if planned_faults is not None else ""
            return (
                f"[{self.index}/{self.total}] {self.name}  {verdict}  {elapsed:.1f} s · "
                f"jobs {ended}/{jobs.get('accepted')} ended, {jobs.get('stuck')} stuck, {jobs.get('lost')} lost · "
                f"faults {c['faults']}{sched} · recovery p99 {_fmt_s(rec.get('p99'))} s "
                f"(bound {_fmt_s(getattr(r, 'bound_s', None))} s)"
            )
        if self._note:
            return f"[{self.index}/{self.total}] {self.name}  {outcome} · {self._note}"
        return f"[{self.index}/{self.total}] {self.name}  {outcome}  {elapsed:.1f} s · no result (see the test report)"

    def _markup(self) -> str:
        verdict = str(getattr(self._result, "verdict", "")) if self._result is not None else ""
        if verdict == "pass" and self._outcome in (None, "passed"):
            return "\x1b[32m"
        if verdict == "fail" or self._outcome == "failed":
            return "\x1b[1;31m"
        return "\x1b[33m"

    # -- output -------------------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):  # a closed or broken terminal must not break the run
            pass

    def _line(self, text: str, markup: str = "") -> None:
        self._before_line()
        with self._lock:
            if markup and self.colour:
                text = f"{markup}{text}\x1b[0m"
            self._emit(text + "\n")
            self._shown = False

    def _clear(self) -> None:
        if self.live and self._shown:
            with self._lock:
                self._emit("\r\x1b[2K")
                self._shown = False

    def _tick(self) -> None:
        every = PROGRESS_LIVE_EVERY_S if self.live else PROGRESS_PLAIN_EVERY_S
        while not self._stop.wait(every):
            try:
                line = self.status_line()
            except Exception:  # noqa: BLE001 - progress must never break a run
                continue
            if self.live:
                width = max(20, self._columns() - 1)
                with self._lock:
                    self._emit("\r\x1b[2K" + line[:width])
                    self._shown = True
            else:
                with self._lock:  # from this thread: never flush pytest's writer (capture is on)
                    self._emit(line + "\n")

    def stop_ticker(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class ProgressPlugin:
    """Registered when scenarios were collected: drives `Progress` from pytest's hooks."""

    def __init__(self, config: pytest.Config, progress: Progress, nodeids: set[str]) -> None:
        self.config = config
        self.progress = progress
        self.nodeids = nodeids

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        """Scenario tests print their own result line, not pytest's dot, in quiet modes."""
        if config.get_verbosity() > 0 or report.nodeid not in self.nodeids or hasattr(report, "wasxfail"):
            return None
        if report.when == "call":  # no letter; the word still names the outcome in the short summary
            return report.outcome, "", report.outcome.upper()
        return None  # setup/teardown: pytest's own (nothing when they pass, "E" when they error)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logstart(self, nodeid: str, location: tuple) -> None:
        if nodeid in self.nodeids:  # outside output capture, after pytest wrote its own prefix
            self.progress.start(str(location[2]).removeprefix("test_").replace("_", "-"))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        if item.nodeid not in self.nodeids:
            return
        rep = outcome.get_result()
        if rep.when == "call" or rep.failed or rep.skipped:
            self.progress.set_outcome(rep.outcome)
        if rep.skipped and isinstance(rep.longrepr, tuple) and len(rep.longrepr) == 3:
            self.progress.set_note(str(rep.longrepr[2]).removeprefix("Skipped: "))
        if rep.when == "teardown":
            self.progress.finish()
