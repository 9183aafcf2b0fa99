"""The harness sees each kind of recovery bug: every deliberately broken layer goes red.

Each deliberately broken fix (harness/testing/broken_fixes.py) breaks one guarantee; each is run against the scenario
that should expose it, and the checker that must catch it is named. The bundled fix passing
the same scenarios is shown by scenarios/ and tests/test_cli.py.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

CASES = [
    # mutant, scenario, a checker that must fail
    ("eager-sweeper", "kill-worker", "reexecutions"),
    ("racy-sweeper", "kill-worker", "reexecutions"),
    ("never-fail", "oom", "all_terminal"),  # a job that OOMs on every attempt
    ("no-fencing", "pause-worker", "duplicates"),
    ("outside-process", "kill-worker", "all_terminal"),
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
