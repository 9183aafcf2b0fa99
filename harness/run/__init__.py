"""Running a chaos scenario: its data (`Scenario`, profiles), when faults strike (`schedule`), the
thread that strikes them (`NemesisThread`), the run itself (`run_scenario`) and its outcome."""

from __future__ import annotations

from harness.run.nemesis_thread import NemesisThread
from harness.run.result import ScenarioResult, fault_totals, judge
from harness.run.runner import run_scenario
from harness.run.scenario import PROFILES, Profile, RunPlan, Scenario, Soak, recovery_bound_s
from harness.run.schedule import WHEN_RUNNING, RandomSchedule, ScheduleEntry, nemesis

__all__ = [
    "PROFILES",
    "WHEN_RUNNING",
    "NemesisThread",
    "Profile",
    "RandomSchedule",
    "RunPlan",
    "Scenario",
    "ScenarioResult",
    "ScheduleEntry",
    "Soak",
    "fault_totals",
    "judge",
    "nemesis",
    "recovery_bound_s",
    "run_scenario",
]
