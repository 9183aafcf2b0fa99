from __future__ import annotations

import math

import pytest

from harness.checkers import (
    AllTerminal,
    Checker,
    Duplicates,
    NoLost,
    RecoveryTime,
    ResultCorrect,
    Verdict,
    compose,
    default_checkers,
    percentile,
    run_checker,
)
from harness.defaults import NON_TERMINAL_STATUSES, TERMINAL_STATUSES
from harness.workload.history import History


class Script:
    """A history whose events are recorded at explicit fake-clock times."""

    def __init__(self) -> None:
        self.now = 0.0
        self.history = History(clock=lambda: self.now)

    def at(self, t: float, kind: str, job_id: str | None = None, **data) -> Script:
        self.now = t
        self.history.record(kind, job_id, **data)
        return self


def good_result(rows: int = 2, base=0.5) -> dict:
    shap = [[0.1 * (i + 1), -0.05, 0.2] for i in range(rows)]
    b = base[0] if isinstance(base, list) else base
    preds = [b + sum(r) for r in shap]
    return {"base_value": base, "shap_values": shap, "predictions": preds}


def job(s: Script, job_id: str, t0: float, t_end: float | None, status: str = "finished", **term) -> None:
    s.at(t0, "submitted", request_id=f"r-{job_id}")
    s.at(t0, "accepted", job_id, request_id=f"r-{job_id}")
    s.at(t0 + 0.1, "status", job_id, status="queued")
    if t_end is not None:
        term.setdefault("attempts", 1)
        s.at(t_end, "terminal", job_id, status=status, **term)


def healthy_run() -> History:
    s = Script()
    job(s, "j1", 0.0, 2.0, result=good_result(), executions=1)
    job(s, "j2", 0.5, 3.0, status="failed", error="ValueError: bad input", executions=1)
    s.at(1.0, "fault_injected", fault="kill_worker", target="w1", job_id="j3")
    job(s, "j3", 0.9, 4.0, result=good_result(3), attempts=2, executions=2)
    s.at(1.2, "fault_healed", fault="kill_worker", target="w1")
    return s.history


# --- basics -----------------------------------------------------------------


def test_status_sets() -> None:
    assert TERMINAL_STATUSES == ("finished", "failed")
    assert "stopped" in NON_TERMINAL_STATUSES and "canceled" in NON_TERMINAL_STATUSES
    assert set(TERMINAL_STATUSES).isdisjoint(NON_TERMINAL_STATUSES)
    assert len(TERMINAL_STATUSES) + len(NON_TERMINAL_STATUSES) == 11


def test_rq_statuses_are_covered() -> None:
    job_mod = pytest.importorskip("rq.job")
    rq_statuses = {s.value for s in job_mod.JobStatus}
    assert rq_statuses == set(TERMINAL_STATUSES) | set(NON_TERMINAL_STATUSES)


def test_verdict_status() -> None:
    assert Verdict("x", True, {}).status == "pass"
    assert Verdict("x", False, {}).status == "fail"
    assert Verdict("x", None, {}).status == "unknown"


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([7.0], 99, 7.0),
        ([3, 1, 2], 0, 1),
        ([3, 1, 2], 50, 2),
        ([3, 1, 2], 100, 3),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 50, 50),
        ([1, 2, 3, 4], 50, 2),
        ([1, 2, 3, 4], 51, 3),
    ],
)
def test_percentile_nearest_rank(values, q, expected) -> None:
    assert percentile(values, q) == expected


def test_percentile_rejects_bad_q() -> None:
    with pytest.raises(ValueError, match="q must be in"):
        percentile([1.0], 101)


def test_checkers_satisfy_protocol() -> None:
    for c in default_checkers(bound_s=5.0):
        assert isinstance(c, Checker)
    assert [c.name for c in default_checkers(bound_s=5.0)] == [
        "all_terminal",
        "no_lost",
        "duplicates",
        "reexecutions",
        "expected_outcome",
        "result_correct",
        "recovery_time",
        "availability",
        "reconciliation",
        "final_read",
    ]
    (timing,) = [c for c in default_checkers(bound_s=7.5) if c.name == "recovery_time"]
    assert timing.bound_s == 7.5


def test_healthy_run_passes_every_default_checker() -> None:
    overall, verdicts = compose(default_checkers(bound_s=5.0), healthy_run())
    assert [v.status for v in verdicts] == ["pass"] * 10
    assert overall.valid is True
    assert overall.details["pass"] == [v.name for v in verdicts]


# --- run_checker / compose ----------------------------------------------------


class Boom:
    name = "boom"

    def check(self, history: History) -> Verdict:
        raise KeyError("status")


class Fixed:
    def __init__(self, name: str, valid: bool | None) -> None:
        self.name = name
        self.valid = valid

    def check(self, history: History) -> Verdict:
        return Verdict(self.name, self.valid, {})


class NotAVerdict:
    name = "sloppy"

    def check(self, history: History):
        return True


def test_raising_checker_is_unknown() -> None:
    v = run_checker(Boom(), History())
    assert v == Verdict("boom", None, {"error": "KeyError: 'status'"})
    assert v.status == "unknown"


def test_non_verdict_return_is_unknown() -> None:
    v = run_checker(NotAVerdict(), History())
    assert v.valid is None
    assert v.details["error"] == "TypeError: check() returned bool, not Verdict"


def test_malformed_event_data_makes_checker_unknown_not_pass() -> None:
    s = Script()
    s.at(0, "accepted", "j1", request_id="r1")
    s.at(1, "terminal", "j1", status="finished", executions="many")
    v = run_checker(Duplicates(), s.history)
    assert v.status == "unknown"
    assert v.details["error"].startswith("ValueError: invalid literal")


@pytest.mark.parametrize(
    ("valids", "expected"),
    [
        ([True, True], True),
        ([True, None], None),
        ([None, False], False),
        ([True, False, None], False),
        ([], None),
    ],
)
def test_compose_semantics(valids, expected) -> None:
    checkers = [Fixed(f"c{i}", v) for i, v in enumerate(valids)]
    overall, verdicts = compose(checkers, History())
    assert overall.valid is expected
    assert [v.valid for v in verdicts] == valids


def test_compose_turns_crash_into_unknown_and_lists_names() -> None:
    overall, verdicts = compose([Fixed("a", True), Boom(), Fixed("c", True)], History())
    assert overall.valid is None
    assert overall.details == {"pass": ["a", "c"], "fail": [], "unknown": ["boom"]}
    assert verdicts[1].details["error"] == "KeyError: 'status'"


# --- AllTerminal --------------------------------------------------------------


def test_all_terminal_passes_and_counts() -> None:
    v = AllTerminal().check(healthy_run())
    assert v.valid is True
    assert v.details == {"accepted": 3, "finished": 2, "failed": 1, "stuck": 0, "stuck_jobs": []}


def test_all_terminal_fails_on_stuck_job() -> None:
    s = Script()
    job(s, "j1", 0, 1.0)
    job(s, "j2", 0, None)
    s.at(2.0, "status", "j2", status="started", worker="w1")
    job(s, "j3", 0, None)  # never seen beyond "queued"
    v = AllTerminal().check(s.history)
    assert v.valid is False
    assert v.details["stuck"] == 2
    assert v.details["finished"] == 1
    assert v.details["stuck_jobs"] == [
        {"job_id": "j2", "last_status": "started"},
        {"job_id": "j3", "last_status": "queued"},
    ]


def test_all_terminal_stopped_or_canceled_is_stuck() -> None:
    s = Script()
    job(s, "j1", 0, 1.0, status="stopped")
    job(s, "j2", 0, 1.0, status="canceled")
    v = AllTerminal().check(s.history)
    assert v.valid is False
    assert v.details["stuck"] == 2
    assert [j["last_status"] for j in v.details["stuck_jobs"]] == ["stopped", "canceled"]


def test_all_terminal_job_never_observed_reports_accepted() -> None:
    s = Script()
    s.at(0, "accepted", "j1", request_id="r1")
    v = AllTerminal().check(s.history)
    assert v.valid is False
    assert v.details["stuck_jobs"] == [{"job_id": "j1", "last_status": "accepted"}]


# --- NoLost -------------------------------------------------------------------


def test_no_lost_passes() -> None:
    v = NoLost().check(healthy_run())
    assert v.valid is True
    assert v.details["lost"] == []
    assert v.details["accepted"] == 3
    assert v.details["unacknowledged"] == 0


def test_no_lost_fails_on_missing_and_never_observed() -> None:
    s = Script()
    job(s, "j1", 0, 1.0)
    s.at(0, "accepted", "j2", request_id="r2")
    job(s, "j3", 0, None)
    s.at(2.0, "status", "j3", status="missing")
    v = NoLost().check(s.history)
    assert v.valid is False
    assert v.details["lost"] == ["j2", "j3"]
    assert v.details["lost_reasons"] == {"j2": "never observed", "j3": "reported missing"}


def test_no_lost_transient_missing_then_found_is_not_lost() -> None:
    s = Script()
    job(s, "j1", 0, None)
    s.at(1.0, "status", "j1", status="missing")
    s.at(2.0, "terminal", "j1", status="finished", attempts=1)
    assert NoLost().check(s.history).valid is True


def test_no_lost_reports_unacknowledged_without_failing() -> None:
    s = Script()
    job(s, "j1", 0, 1.0)
    s.at(0.2, "submitted", request_id="r-timeout")
    s.at(0.3, "submitted", request_id="r-rejected")
    s.at(0.4, "rejected", request_id="r-rejected", status=503, error="redis down")
    v = NoLost().check(s.history)
    assert v.valid is True
    assert v.details["unacknowledged"] == 1
    assert v.details["unacknowledged_requests"] == ["r-timeout"]


# --- Duplicates -------------------------------------------------------------


def test_duplicates_shown_not_failed() -> None:
    s = Script()
    job(s, "j1", 0, 1.0, executions=3, late_completions=1, result=good_result())
    s.at(1.5, "terminal", "j1", status="finished", attempts=3, result=good_result(), late_completions=2)
    job(s, "j2", 0, 1.0, executions=1)
    v = Duplicates().check(s.history)
    assert v.valid is True
    assert v.details["duplicated_jobs"] == 1
    assert v.details["duplicates"] == {"j1": {"executions": 3, "terminal_events": 2}}
    assert v.details["late_completions"] == 2  # max per job, not double counted
    assert v.details["conflicts"] == {}


def test_duplicates_fails_on_conflicting_terminal_status() -> None:
    s = Script()
    job(s, "j1", 0, 1.0, status="failed", error="WorkerLost")
    s.at(2.0, "terminal", "j1", status="finished", attempts=2, result=good_result())
    v = Duplicates().check(s.history)
    assert v.valid is False
    assert v.details["conflicts"] == {"j1": {"statuses": ["failed", "finished"], "distinct_results": 1}}


def test_duplicates_a_job_that_ended_then_vanished_is_loss_not_a_conflict() -> None:
    """Redis emptied after the job finished (redis-restart-empty): the final read says missing.
    That is data loss, judged by no_lost and data_loss_reported; no zombie overwrote anything."""
    s = Script()
    job(s, "j1", 0, 1.0, result=good_result(), executions=1)
    s.at(5.0, "terminal", "j1", status="missing", attempts=None, final=True)
    v = Duplicates().check(s.history)
    assert v.valid is True
    assert v.details["conflicts"] == {}
    assert v.details["duplicates"] == {}
    assert v.details["lost_after_ending"] == ["j1"]


def test_duplicates_fails_on_conflicting_results() -> None:
    s = Script()
    job(s, "j1", 0, 1.0, result=good_result(2))
    s.at(2.0, "terminal", "j1", status="finished", attempts=2, result=good_result(3))
    v = Duplicates().check(s.history)
    assert v.valid is False
    assert v.details["conflicts"]["j1"] == {"statuses": ["finished"], "distinct_results": 2}


def test_duplicates_max_executions() -> None:
    s = Script()
    job(s, "j1", 0, 1.0, executions=3)
    job(s, "j2", 0, 1.0, executions=2)
    assert Duplicates(max_executions=3).check(s.history).valid is True
    v = Duplicates(max_executions=2).check(s.history)
    assert v.valid is False
    assert v.details["over_max_executions"] == {"j1": 3}


def test_duplicates_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Duplicates(2)  # type: ignore[misc]


# --- ResultCorrect ------------------------------------------------------------


def test_result_correct_passes_scalar_and_list_base() -> None:
    s = Script()
    job(s, "j1", 0, 1.0, result=good_result(base=0.5))
    job(s, "j2", 0, 1.0, result=good_result(base=[0.25]))
    job(s, "j3", 0, 1.0, status="failed", error="boom")
    v = ResultCorrect().check(s.history)
    assert v.valid is True
    assert v.details["checked"] == 2
    assert v.details["bad_jobs"] == []
    assert v.details["unchecked"] == 0
    assert v.details["worst"]["error"] < 1e-12


def test_result_correct_fails_on_non_additive_result() -> None:
    s = Script()
    job(s, "ok", 0, 1.0, result=good_result())
    broken = good_result(3)
    broken["predictions"][1] += 0.01
    broken["predictions"][2] += 0.5
    job(s, "torn", 0, 1.0, result=broken)
    v = ResultCorrect().check(s.history)
    assert v.valid is False
    assert v.details["bad_jobs"] == ["torn"]
    assert v.details["reasons"]["torn"].startswith("row 1: error")
    assert v.details["worst"]["job_id"] == "torn"
    assert v.details["worst"]["row"] == 2
    assert v.details["worst"]["error"] == pytest.approx(0.5)


def test_result_correct_tolerance_is_relative_to_prediction() -> None:
    # error 1e-4 on a prediction of 1000 is within rtol=1e-6 * 1000 = 1e-3
    big = {"base_value": 999.0, "shap_values": [[1.0]], "predictions": [1000.0001]}
    s = Script()
    job(s, "j1", 0, 1.0, result=big)
    assert ResultCorrect().check(s.history).valid is True
    assert ResultCorrect(rtol=1e-8).check(s.history).valid is False


def test_result_correct_small_prediction_uses_absolute_floor() -> None:
    r = {"base_value": 0.0, "shap_values": [[0.0]], "predictions": [5e-7]}
    s = Script()
    job(s, "j1", 0, 1.0, result=r)
    assert ResultCorrect().check(s.history).valid is True
    r2 = {"base_value": 0.0, "shap_values": [[0.0]], "predictions": [2e-6]}
    s2 = Script()
    job(s2, "j1", 0, 1.0, result=r2)
    assert ResultCorrect().check(s2.history).valid is False


def test_result_correct_nan_fails() -> None:
    r = {"base_value": 0.0, "shap_values": [[math.nan]], "predictions": [1.0]}
    s = Script()
    job(s, "j1", 0, 1.0, result=r)
    job(s, "j2", 0, 1.0, result={"base_value": 0.0, "shap_values": [[0.9]], "predictions": [1.0]})
    v = ResultCorrect().check(s.history)
    assert v.valid is False
    assert v.details["bad_jobs"] == ["j1", "j2"]
    assert v.details["worst"]["job_id"] == "j1"
    assert math.isnan(v.details["worst"]["error"])


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ({"shap_values": [[1.0]], "predictions": [1.0]}, "lacks 'base_value'"),
        ({"base_value": [1.0, 2.0], "shap_values": [[1.0]], "predictions": [2.0]}, "2 entries"),
        ({"base_value": 0.0, "shap_values": [[1.0], [1.0]], "predictions": [1.0]}, "2 shap rows for 1"),
        ({"base_value": 0.0, "shap_values": [[1.0]], "predictions": ["1.0"]}, "non-numeric"),
        ("not a dict", "not an object"),
    ],
)
def test_result_correct_malformed_result_fails(result, reason) -> None:
    s = Script()
    job(s, "j1", 0, 1.0, result=result)
    v = ResultCorrect().check(s.history)
    assert v.valid is False
    assert v.details["bad_jobs"] == ["j1"]
    assert reason in v.details["reasons"]["j1"]


def test_result_correct_fails_a_finished_job_without_a_result() -> None:
    """Issue 15: a `finished` job with no result passed as merely "unchecked"; nothing was proven."""
    s = Script()
    job(s, "j1", 0, 1.0, result=good_result())
    job(s, "j2", 0, 1.0)
    v = ResultCorrect().check(s.history)
    assert v.valid is False
    assert v.details["checked"] == 1
    assert v.details["bad_jobs"] == ["j2"]
    assert v.details["reasons"]["j2"] == "finished without a result"
    assert v.details["unchecked_jobs"] == ["j2"]


# --- RecoveryTime -------------------------------------------------------------


def test_recovery_time_no_faults_passes_with_no_samples() -> None:
    s = Script()
    job(s, "j1", 0, 1.0)
    v = RecoveryTime(bound_s=1.0).check(s.history)
    assert v.valid is True
    assert v.details["n"] == 0
    assert v.details["p50"] is None and v.details["p99"] is None and v.details["max"] is None


def test_recovery_time_targeted_fault() -> None:
    s = Script()
    job(s, "j1", 0.0, None)
    job(s, "other", 0.0, None)
    s.at(1.0, "fault_injected", fault="kill_worker", target="w1", job_id="j1")
    s.at(3.5, "terminal", "j1", status="finished", attempts=2)
    s.at(9.0, "terminal", "other", status="finished", attempts=1)
    v = RecoveryTime(bound_s=5.0).check(s.history)
    assert v.valid is True
    assert v.details["samples"] == {"j1": 2.5}  # "other" was not targeted
    assert v.details["n"] == 1
    assert v.details["max"] == 2.5
    assert v.details["bound_s"] == 5.0


def test_recovery_time_a_fault_without_a_job_times_only_what_it_hit() -> None:
    s = Script()
    job(s, "done_before", 0.0, 0.5)
    job(s, "a", 0.0, None)
    job(s, "b", 0.2, None)
    job(s, "queued", 0.3, None)
    s.at(1.0, "fault_injected", fault="redis-restart", target="redis", running_jobs=["a", "b"])
    s.at(1.2, "fault_injected", fault="api-crash", target="api")  # no job was running on the API
    job(s, "after", 1.5, 2.0)
    s.at(2.0, "terminal", "a", status="finished", attempts=1)
    s.at(4.0, "terminal", "b", status="failed", attempts=3, error="gave up")
    s.at(9.0, "terminal", "queued", status="finished", attempts=1)
    v = RecoveryTime(bound_s=5.0).check(s.history)
    assert v.valid is True
    assert v.details["samples"] == {"a": 1.0, "b": 3.0}  # "queued" was in flight, but nothing broke it
    assert v.details["p50"] == 1.0
    assert v.details["p99"] == 3.0
    assert v.details["max"] == 3.0


def test_recovery_time_runs_from_the_first_fault_that_broke_the_attempt() -> None:
    s = Script()
    job(s, "j1", 0.0, None)
    s.at(0.5, "status", "j1", status="started", worker="w1")
    s.at(1.0, "fault_injected", fault="redis-partition", target="w1", job_id="j1")
    s.at(2.0, "fault_injected", fault="kill-worker", target="w1", job_id="j1")  # the same attempt
    s.at(5.0, "terminal", "j1", status="finished", attempts=2)
    v = RecoveryTime(bound_s=3.5).check(s.history)
    assert v.details["samples"] == {"j1": 4.0} and v.valid is False  # not 3.0 from the later fault


def test_recovery_time_fails_when_slow() -> None:
    s = Script()
    job(s, "fast", 0.0, None)
    job(s, "slow", 0.0, None)
    s.at(0.5, "status", "fast", status="started", worker="w1")
    s.at(0.6, "status", "slow", status="started", worker="w1")
    s.at(1.0, "fault_injected", fault="kill_worker", target="w1")
    s.at(2.0, "terminal", "fast", status="finished", attempts=1)
    s.at(12.0, "terminal", "slow", status="finished", attempts=2)
    v = RecoveryTime(bound_s=10.0).check(s.history)
    assert v.valid is False
    assert v.details["over_bound"] == ["slow"]
    assert v.details["max"] == 11.0
    assert v.details["unrecovered"] == []


def test_recovery_time_fails_on_unrecovered_job() -> None:
    s = Script()
    job(s, "j1", 0.0, None)
    job(s, "j2", 0.0, None)
    s.at(1.0, "fault_injected", fault="kill_worker", target="w1", job_id="j1")
    s.at(1.5, "fault_injected", fault="kill_worker", target="w2", job_id="j2")
    s.at(2.0, "terminal", "j1", status="finished", attempts=2)
    s.at(3.0, "terminal", "j2", status="stopped", attempts=1)  # not a recovery
    v = RecoveryTime(bound_s=10.0).check(s.history)
    assert v.valid is False
    assert v.details["unrecovered"] == ["j2"]
    assert v.details["samples"] == {"j1": 1.0}
    assert v.details["over_bound"] == []


def test_recovery_time_a_new_attempt_broken_again_is_timed_from_that_fault() -> None:
    """The second kill found j1 running on another worker: its first attempt had been recovered."""
    s = Script()
    job(s, "j1", 0.0, None)
    s.at(1.0, "fault_injected", fault="kill_worker", target="w1", job_id="j1")
    s.at(5.0, "fault_injected", fault="kill_worker", target="w2", job_id="j1")
    s.at(7.0, "terminal", "j1", status="finished", attempts=3)
    s.at(8.0, "fault_injected", fault="kill_worker", target="w3", job_id="j1")  # already done
    v = RecoveryTime(bound_s=3.0).check(s.history)
    assert v.valid is True
    assert v.details["samples"] == {"j1": 2.0}
    assert v.details["unrecovered"] == []


def test_recovery_time_times_broken_attempts_not_a_queued_backlog() -> None:
    """A fault that names what it broke times those jobs; a job queued behind it is not timed."""
    s = Script()
    job(s, "running", 0.0, None)
    s.at(0.5, "status", "running", status="started", worker="w1")
    job(s, "queued", 0.0, None)
    s.at(1.0, "fault_injected", fault="api-crash", target="api", running_jobs=["running"])
    s.at(1.5, "terminal", "running", status="finished", attempts=1)
    s.at(20.0, "terminal", "queued", status="finished", attempts=1)  # waited for capacity
    v = RecoveryTime(bound_s=5.0).check(s.history)
    assert v.valid is True
    assert v.details["samples"] == {"running": 0.5}


def test_recovery_time_a_worker_fault_hits_the_job_seen_running_on_that_worker() -> None:
    """The fault names a job it believed was on w2; the job really seen there is hit too, and
    its clock restarts at this later fault."""
    s = Script()
    job(s, "j1", 0.0, None)
    s.at(0.5, "status", "j1", status="started", worker="w2")
    s.at(1.0, "fault_injected", fault="redis-restart", target="redis", running_jobs=["j1"])
    s.at(4.0, "fault_injected", fault="pause-worker", target="w2", job_id="stale-view")
    s.at(8.0, "terminal", "j1", status="finished", attempts=2)
    v = RecoveryTime(bound_s=5.0).check(s.history)
    assert v.details["samples"] == {"j1": 4.0}
    assert v.details["unrecovered"] == ["stale-view"]  # named, never seen ending: still judged


def test_recovery_time_a_job_seen_requeued_is_no_longer_on_its_old_worker() -> None:
    s = Script()
    job(s, "j1", 0.0, None)
    s.at(0.5, "status", "j1", status="started", worker="w1")
    s.at(1.0, "status", "j1", status="queued")
    s.at(2.0, "fault_injected", fault="kill-worker", target="w1", job_id="other")
    s.at(2.5, "terminal", "other", status="finished", attempts=2)
    s.at(30.0, "terminal", "j1", status="finished", attempts=1)
    v = RecoveryTime(bound_s=5.0).check(s.history)
    assert v.valid is True
    assert v.details["samples"] == {"other": 0.5}


def test_recovery_time_bound_is_keyword_only_and_non_negative() -> None:
    with pytest.raises(TypeError):
        RecoveryTime(5.0)  # type: ignore[misc]
    with pytest.raises(ValueError, match="bound_s"):
        RecoveryTime(bound_s=-1)


def test_compose_fails_overall_when_one_checker_fails() -> None:
    s = Script()
    job(s, "j1", 0.0, None)
    s.at(1.0, "fault_injected", fault="kill_worker", target="w1", job_id="j1")
    overall, verdicts = compose(default_checkers(bound_s=5.0), s.history)
    assert overall.valid is False
    by_name = {v.name: v.status for v in verdicts}
    assert by_name == {
        "all_terminal": "fail",
        "no_lost": "pass",
        "duplicates": "pass",
        "reexecutions": "pass",
        "expected_outcome": "pass",
        "result_correct": "pass",
        "recovery_time": "fail",
        "availability": "pass",
        "reconciliation": "pass",
        "final_read": "pass",
    }
    assert overall.details["fail"] == ["all_terminal", "recovery_time"]


def test_recovery_time_accepts_target_in_data_too(tmp_path) -> None:
    # A hand-written JSONL history may carry the target inside data.
    rows = [
        '{"t": 0.0, "kind": "accepted", "job_id": "j1", "data": {"request_id": "r1"}}',
        '{"t": 0.0, "kind": "accepted", "job_id": "j2", "data": {"request_id": "r2"}}',
        '{"t": 1.0, "kind": "fault_injected", "job_id": null,'
        ' "data": {"fault": "kill", "target": "w", "job_id": "j1"}}',
        '{"t": 2.0, "kind": "terminal", "job_id": "j1", "data": {"status": "finished"}}',
        '{"t": 9.0, "kind": "terminal", "job_id": "j2", "data": {"status": "finished"}}',
    ]
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(rows) + "\n")
    v = RecoveryTime(bound_s=5.0).check(History.load(path))
    assert v.details["samples"] == {"j1": 1.0}
    assert v.valid is True


# -- Reexecutions ---------------------------------------------------------------------------


def _reexec_history(*, executions: int, fault_on: str | None, fault: dict | None = None):
    from harness.checkers import Reexecutions

    clock = iter(range(100)).__next__
    h = History(clock=lambda: float(clock()))
    h.record("accepted", job_id="j1")
    h.record("accepted", job_id="j2")
    if fault_on:
        h.record("fault_injected", job_id=fault_on, fault="kill_worker")
    if fault:
        h.record("fault_injected", **fault)
    h.record("terminal", job_id="j1", status="finished", executions=executions)
    h.record("terminal", job_id="j2", status="finished", executions=1)
    return Reexecutions().check(h)


def test_reexecution_explained_by_a_fault_passes():
    v = _reexec_history(executions=2, fault_on="j1")
    assert v.valid is True and v.details["unexplained"] == {}


def test_reexecution_without_a_fault_fails():
    v = _reexec_history(executions=2, fault_on=None)
    assert v.valid is False and v.details["unexplained"] == {"j1": {"executions": 2, "faults": 0}}


def test_reexecution_beyond_the_faults_fails_and_a_fault_without_a_job_excuses_what_it_hit():
    assert _reexec_history(executions=3, fault_on="j1").valid is False
    assert _reexec_history(executions=2, fault_on="j2").valid is False  # the fault hit another job
    redis = {"fault": "redis-restart", "target": "redis", "running_jobs": ["j1"]}
    assert _reexec_history(executions=2, fault_on=None, fault=redis).valid is True  # j1 ran on it
    assert _reexec_history(executions=2, fault_on=None, fault={**redis, "running_jobs": ["j2"]}).valid is False
    api = {"fault": "api-crash", "target": "api", "running_jobs": ["j1"]}
    assert _reexec_history(executions=2, fault_on=None, fault=api).valid is False  # workers carry on


def test_expected_outcome_fails_a_good_job_that_failed_and_a_hang_that_finished():
    from harness.checkers import ExpectedOutcome

    h = History(clock=iter(float(i) for i in range(100)).__next__)
    for job_id, kind, status in (
        ("a", "light", "finished"),
        ("b", "slow", "failed"),
        ("c", "hang", "finished"),
        ("d", "hungry", "failed"),
        ("e", "hang", "failed"),
    ):
        h.record("accepted", job_id=job_id, job_kind=kind)
        h.record("terminal", job_id=job_id, status=status)
    v = ExpectedOutcome().check(h)
    assert v.valid is False and set(v.details["wrong"]) == {"b", "c"} and v.details["judged"] == 4


def test_expected_outcome_lets_a_job_fail_when_a_fault_cut_every_attempt():
    from harness.checkers import ExpectedOutcome

    h = History(clock=iter(float(i) for i in range(100)).__next__)
    for job_id in ("hit3", "hit2", "api", "redis"):
        h.record("accepted", job_id=job_id, job_kind="slow")
    for _ in range(3):
        h.record("fault_injected", job_id="hit3", fault="kill-worker", target="w1")
    for _ in range(2):
        h.record("fault_injected", job_id="hit2", fault="kill-horse", target="w2")
        h.record("fault_injected", fault="redis-restart", target="redis", running_jobs=["redis"])
        h.record("fault_injected", fault="api-crash", target="api", running_jobs=["api"])
    h.record("fault_injected", fault="redis-restart", target="redis", running_jobs=["redis"])
    for job_id in ("hit3", "hit2", "api", "redis"):
        h.record("terminal", job_id=job_id, status="failed", executions=3)
    v = ExpectedOutcome().check(h)
    # MAX_ATTEMPTS spent on faults: the retry policy, not a bug. An API crash cuts no attempt.
    assert set(v.details["attempts_exhausted_by_faults"]) == {"hit3", "redis"}
    assert v.valid is False and set(v.details["wrong"]) == {"hit2", "api"}


def test_reexecution_of_a_job_that_hangs_by_itself_is_not_judged():
    from harness.checkers import Reexecutions

    h = History(clock=iter(float(i) for i in range(100)).__next__)
    h.record("accepted", job_id="h", job_kind="hang")
    h.record("accepted", job_id="s", job_kind="slow")
    h.record("terminal", job_id="h", status="failed", executions=2)
    h.record("terminal", job_id="s", status="finished", executions=2)
    v = Reexecutions().check(h)
    assert v.valid is False and set(v.details["unexplained"]) == {"s"}


# -- result-correct ties a SHAP result to its request ------------------------------------------------


def _shap_history(result: dict, rows: list[list[float]]) -> History:
    s = Script()
    s.at(0.0, "accepted", "j1", request_id="r1", job_kind="light", expect={"body": {"model": "diabetes", "rows": rows}})
    s.at(1.0, "terminal", "j1", status="finished", result=result)
    return s.history


def _answer(rows: list[list[float]], predictions: list[float]) -> dict:
    """A result that adds up: each row's SHAP values sum to prediction - base."""
    base = 150.0
    shap = [[(p - base) / len(r)] * len(r) for r, p in zip(rows, predictions, strict=True)]
    return {"base_value": base, "shap_values": shap, "predictions": predictions}


def test_result_correct_ties_a_shap_result_to_the_rows_its_request_sent():
    from harness.checkers.oracle import oracle_predictions
    from harness.workload.plan import diabetes_rows

    rows = [list(r) for r in diabetes_rows()[:3]]
    right = oracle_predictions("diabetes", rows)
    assert right is not None and len(right) == 3
    assert ResultCorrect().check(_shap_history(_answer(rows, right), rows)).valid is True
    others = oracle_predictions("diabetes", [list(r) for r in diabetes_rows()[3:6]])
    mixed = ResultCorrect().check(_shap_history(_answer(rows, others), rows))  # adds up, wrong rows
    assert mixed.valid is False and "is not the model's" in mixed.details["reasons"]["j1"]
    short = ResultCorrect().check(_shap_history(_answer(rows[:2], right[:2]), rows))
    assert short.valid is False and "2 rows of SHAP values for the 3 rows sent" in short.details["reasons"]["j1"]
    narrow = _answer([r[:9] for r in rows], right)
    assert (
        "9 SHAP values for 10 features" in ResultCorrect().check(_shap_history(narrow, rows)).details["reasons"]["j1"]
    )
