"""The harness sees each kind of bug: every deliberately broken layer or API goes red.

Each deliberately broken fix (harness/testing/broken_fixes.py) or API (harness/testing/api.py)
breaks one guarantee; each is run against the scenario that should expose it, and the checker
that must catch it is named: every checker of the standard suite has one. The bundled fix
passing the same scenarios is shown by scenarios/ and tests/test_cli.py; stock RQ's own worker
going red is tests/test_targets.py.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

from harness.run import Scenario
from harness.workload import Workload

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

CASES = [
    # mutant, scenario, a checker that must fail
    ("eager-sweeper", "kill-worker", "reexecutions"),
    ("racy-sweeper", "kill-worker", "reexecutions"),
    ("never-fail", "oom", "all_terminal"),  # a job that OOMs on every attempt
    ("no-fencing", "pause-worker", "duplicates"),
    ("outside-process", "kill-worker", "all_terminal"),
    ("late-recovery", "kill-worker", "recovery_time"),
    ("short-timeout", "kill-worker", "expected_outcome"),
    ("torn-result", "kill-worker", "result_correct"),
    ("eager-cleanup", "kill-worker", "no_lost"),
    ("swapped-rows", "kill-worker", "result_correct"),  # adds up, but not for the rows sent
    ("blind-to-loss", "redis-restart-empty", "data_loss_reported"),  # the loss goes unreported
]
#: Broken APIs: (what --break takes, scenario, the checker that must fail).
API_CASES = [
    ("flaky-accept", "kill-worker", "availability"),
    ("double-enqueue", "kill-worker", "reconciliation"),
]


@pytest.mark.parametrize("mutant,scenario,checker", CASES, ids=[c[0] for c in CASES])
def test_harness_flags_the_broken_layer(tmp_path, harness_cli, mutant, scenario, checker):
    run = harness_cli(
        "run", "--fix", mutant, "--scenario", scenario, "--report-dir", str(tmp_path), "--seed", "11", timeout=230
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    (result,) = summary["scenarios"]
    assert summary["fix"] == mutant
    assert run.returncode == 1, run.stdout[-3000:]
    assert result["verdict"] == "fail", result
    assert result["checkers"][checker] == "fail", result["checkers"]


@pytest.mark.parametrize("broken,scenario,checker", API_CASES, ids=[c[0] for c in API_CASES])
def test_harness_flags_the_broken_api(tmp_path, harness_cli, broken, scenario, checker):
    api = f"{{python}} -m harness.testing.api --break {broken}"
    run = harness_cli(
        "run", "--api-cmd", api, "--scenario", scenario, "--report-dir", str(tmp_path), "--seed", "11", timeout=230
    )
    (result,) = json.loads((tmp_path / "summary.json").read_text())["scenarios"]
    assert run.returncode == 1, run.stdout[-3000:]
    assert result["checkers"][checker] == "fail", result["checkers"]


# -- a real run whose API never comes back ------------------------------------------------------------


class KillApiForGood:
    """Kills the API and never heals: nothing can be read in the final phase."""

    name: ClassVar[str] = "kill-api-for-good"

    def inject(self, ctx: Any) -> dict[str, Any]:
        ctx.stack.kill_api()
        return {"target": "api"}

    def heal(self, ctx: Any) -> None:
        pass


def test_a_run_whose_final_read_fails_is_unknown_not_judged_on_stale_views(run_scenario):
    scenario = Scenario(
        name="final-read-impossible",
        workload=Workload(jobs=4, concurrency=2, mix={"light": 1, "slow": 1}, slow_s=2),
        faults=[(2.0, KillApiForGood())],  # seconds in: jobs accepted, some running
        deadline_s=6,
        settle_s=0.5,
    )
    result = run_scenario(scenario)
    statuses = result.checker_statuses()
    assert statuses["final_read"] == "unknown", result.explain()
    assert result.verdict != "pass"
