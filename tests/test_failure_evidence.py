"""A stack test that fails says what its stack did: the report carries each process's recovery
events and errors, read before teardown removes the logs (CI keeps nothing else)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


def test_a_failing_stack_test_reports_what_its_stack_logged(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(
        test_inner="""
        def test_fails_after_a_job(stack_factory):
            stack = stack_factory(workers=1)
            job_id = stack.submit(chaos={"sleep_s": 0})["job_id"]
            assert stack.wait_terminal(job_id)["status"] == "finished"
            assert False, "failing on purpose"

        def test_passes(stack_factory):
            stack_factory(workers=0)
        """
    )
    result = pytester.runpytest_subprocess("-p", "fixtures.stacks", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    assert "stack0 events and errors" in out, out
    assert '"event": "job_finished"' in out, out  # the worker's own line, from its log
    assert out.count("events and errors") == 1, out  # the passing test reports nothing
