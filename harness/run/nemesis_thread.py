"""The nemesis thread: injects a run's fault schedule on time, heals after `for_s` or in the final phase.

It lives beside the runner for now; it could move to `harness.nemesis` (as e.g. `driver.py`),
the role it plays, once the faults' split there has settled.
"""

from __future__ import annotations

import threading
import time

from harness.defaults import NEMESIS_JOIN_S
from harness.nemesis import Fault, FaultContext, NoTarget, fault_label
from harness.wait import eventually
from harness.workload.history import FAULT_HEALED, FAULT_INJECTED

__all__ = ["NemesisThread"]


class NemesisThread:
    """Injects the schedule on its own thread; heals after `for_s` or in the final phase.

    With `until` (a soak), the nemesis stops once that event is set (the workload stopped
    submitting): later faults of the schedule are not due, and a fault still waiting for a
    target when the run ends was cut off by the end, not missed. `expected()` says which
    faults the run must show injected and healed."""

    def __init__(
        self, schedule: list[tuple[float, Fault]], ctx: FaultContext, *, until: threading.Event | None = None
    ) -> None:
        self.schedule = schedule
        self.ctx = ctx
        self.until = until
        self.injected: list[Fault] = []
        self._attempted: list[Fault] = []
        self._cut_off: set[int] = set()
        self._healed: set[int] = set()
        self._heal_lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def join(self, timeout: float = NEMESIS_JOIN_S) -> None:
        self._thread.join(timeout)

    def expected(self) -> list[str]:
        """Names of the faults that must have been injected: the whole schedule, or for a soak
        the faults that came due while the workload submitted (minus those the end cut off)."""
        if self.until is None:
            return [f.name for _, f in self.schedule]
        return [f.name for f in self._attempted if id(f) not in self._cut_off]

    def _ended(self) -> bool:
        return self.ctx.stop.is_set() or (self.until is not None and self.until.is_set())

    def _wait(self, seconds: float) -> bool:
        """Sleep until a fault's time; True when the run (or, for a soak, the submitting) ended first."""
        if self.until is None:
            return seconds > 0 and self.ctx.stop.wait(seconds)
        return bool(eventually(self._ended, timeout=seconds, interval=0.1))

    def _run(self) -> None:
        ctx = self.ctx
        for i, (at, fault) in enumerate(self.schedule):
            if self._wait(self._t0 + at - time.monotonic()):
                if self.until is not None:
                    left = len(self.schedule) - i
                    ctx.note(
                        f"nemesis stopped with the workload's submissions; the schedule's last {left} faults were left",
                        left_out=left,
                    )
                    return
                ctx.note(f"fault {fault.name} not injected: the run ended first", fault=fault.name)
                continue
            self._attempted.append(fault)
            try:
                data = dict(fault.inject(ctx) or {})
            except NoTarget as exc:
                if self.until is not None and self.until.is_set():
                    self._cut_off.add(id(fault))
                    exc = NoTarget(f"{exc} (cut off: the workload stopped submitting while it waited)")
                ctx.note(f"fault {fault.name} not injected: {exc}", fault=fault.name)
                continue
            except Exception as exc:  # noqa: BLE001 - a nemesis bug makes the run unknown, not ok
                ctx.note(f"fault {fault.name} failed to inject: {type(exc).__name__}: {exc}", fault=fault.name)
                self.injected.append(fault)  # it may have half-happened: heal it too
                continue
            job_id = data.pop("job_id", None)
            label = fault_label(fault, ctx.backend)
            ctx.history.record(FAULT_INJECTED, job_id, fault=fault.name, label=label, **data)
            self.injected.append(fault)
            for_s = getattr(fault, "for_s", None)
            if for_s is not None:
                timer = threading.Timer(for_s, self.heal, args=(fault,))
                timer.daemon = True
                timer.start()
                self._timers.append(timer)

    def heal(self, fault: Fault) -> None:
        with self._heal_lock:
            if id(fault) in self._healed:
                return
            self._healed.add(id(fault))
            try:
                fault.heal(self.ctx)
                label = fault_label(fault, self.ctx.backend)
                self.ctx.history.record(FAULT_HEALED, fault=fault.name, label=label)
            except Exception as exc:  # noqa: BLE001
                self.ctx.note(f"fault {fault.name} failed to heal: {type(exc).__name__}: {exc}", fault=fault.name)

    def heal_all(self) -> None:
        """The final phase: every injected fault is healed, latest first."""
        for timer in self._timers:
            timer.cancel()
        for fault in reversed(self.injected):
            self.heal(fault)
