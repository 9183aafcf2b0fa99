"""The harness's own accounting: final read, reconciliation with Redis, availability.

Hand-written histories for the rules (pure logic); the real runs that each of them must catch
are in tests/test_detection_power.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.checkers import Availability, FinalRead, Reconciliation
from harness.checkers.evidence import DATA_LOSS_NOTE, DataLossReported, fault_windows, lost_answers
from harness.workload.history import (
    ACCEPTED,
    FAULT_HEALED,
    FAULT_INJECTED,
    NOTE,
    RECONCILE,
    REJECTED,
    STATUS,
    SUBMITTED,
    History,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _history() -> tuple[History, Clock]:
    clock = Clock()
    return History(clock=clock), clock


def _at(h: History, clock: Clock, t: float, kind: str, job_id: str | None = None, **data: Any) -> None:
    clock.now = t
    h.record(kind, job_id, **data)


# -- final read -------------------------------------------------------------------------------------


def test_final_read_is_unknown_for_a_job_not_read_after_the_heal():
    h, c = _history()
    _at(h, c, 0.1, ACCEPTED, "j1", request_id="r1")
    _at(h, c, 0.2, ACCEPTED, "j2", request_id="r2")
    _at(h, c, 1.0, STATUS, "j2", status="finished", final=True)  # before the heal: stale
    _at(h, c, 2.0, NOTE, text="final phase: faults healed")
    _at(h, c, 3.0, STATUS, "j1", status="finished", final=True)
    v = FinalRead().check(h)
    assert v.status == "unknown" and v.details["unread_jobs"] == ["j2"]
    _at(h, c, 3.1, STATUS, "j2", status="finished", final=True)
    assert FinalRead().check(h).status == "pass"


# -- reconciliation ---------------------------------------------------------------------------------


def _reconciled(jobs: dict[str, str], *, retried: bool = False, read_ok: bool = True) -> History:
    h, c = _history()
    _at(h, c, 0.0, SUBMITTED, request_id="r1", attempt=1)
    if retried:  # the first answer was lost (a timeout, a 5xx): the attempt may have made a job
        _at(h, c, 0.5, SUBMITTED, request_id="r1", attempt=2)
    _at(h, c, 0.6, ACCEPTED, "j1", request_id="r1")
    _at(h, c, 0.7, SUBMITTED, request_id="r2", attempt=1)
    _at(h, c, 0.8, REJECTED, request_id="r2", status=422, error="bad rows")
    if read_ok:
        _at(h, c, 5.0, RECONCILE, read_ok=True, jobs=jobs, dangling=[])
    else:
        _at(h, c, 5.0, RECONCILE, read_ok=False, error="ConnectionError")
    return h


def test_lost_answers_count_retried_and_unanswered_attempts():
    h, c = _history()
    for t, rid, attempt in ((0, "a", 1), (1, "a", 2), (2, "b", 1), (3, "c", 1)):
        _at(h, c, t, SUBMITTED, request_id=rid, attempt=attempt)
    _at(h, c, 4, ACCEPTED, "j", request_id="a")
    _at(h, c, 5, REJECTED, request_id="b", status=400)
    assert lost_answers(h) == 2  # a's first attempt, and c (never answered)


def test_reconciliation_explains_an_unseen_job_only_by_a_lost_answer():
    ok = Reconciliation().check(_reconciled({"j1": "finished"}))
    assert ok.status == "pass" and ok.details["unseen_jobs"] == {}
    double = Reconciliation().check(_reconciled({"j1": "finished", "j9": "finished"}))
    assert double.status == "fail" and double.details["unexplained"] == 1  # one request, two jobs
    explained = Reconciliation().check(_reconciled({"j1": "finished", "j9": "finished"}, retried=True))
    assert explained.status == "pass" and explained.details["unseen_jobs"] == {"j9": "finished"}
    stuck = Reconciliation().check(_reconciled({"j1": "finished", "j9": "started"}, retried=True))
    assert stuck.status == "fail" and stuck.details["unseen_not_ended"] == {"j9": "started"}
    assert Reconciliation().check(_reconciled({}, read_ok=False)).status == "unknown"


# -- availability -----------------------------------------------------------------------------------


def test_fault_windows_end_at_the_heal_or_soon_after_a_final_phase_fault():
    h, c = _history()
    _at(h, c, 1.0, FAULT_INJECTED, fault="api-crash")
    _at(h, c, 3.0, FAULT_HEALED, fault="api-crash")
    _at(h, c, 4.0, FAULT_INJECTED, fault="kill-worker")
    _at(h, c, 20.0, NOTE, text="final phase: faults healed")
    _at(h, c, 20.1, FAULT_HEALED, fault="kill-worker")
    assert fault_windows(h) == [(1.0, 3.0, "api-crash"), (4.0, 7.0, "kill-worker")]


def test_availability_splits_attempts_by_fault_window():
    h, c = _history()
    _at(h, c, 0.0, SUBMITTED, request_id="a", attempt=1)
    _at(h, c, 0.1, ACCEPTED, "ja", request_id="a")
    _at(h, c, 1.0, FAULT_INJECTED, fault="api-crash")
    _at(h, c, 1.5, SUBMITTED, request_id="b", attempt=1)  # refused: the API is down
    _at(h, c, 2.5, SUBMITTED, request_id="b", attempt=2)
    _at(h, c, 3.0, FAULT_HEALED, fault="api-crash")
    _at(h, c, 3.2, ACCEPTED, "jb", request_id="b")  # on the wire while the API was down: during
    _at(h, c, 4.0, SUBMITTED, request_id="c", attempt=1)
    _at(h, c, 4.5, SUBMITTED, request_id="c", attempt=2)  # a retry outside any fault: a refusal
    _at(h, c, 4.6, ACCEPTED, "jc", request_id="c")
    v = Availability(outside=0.95, during=0.0).check(h)
    assert v.details["attempts"] == {"outside": 3, "during": 2}
    assert v.details["outside"] == pytest.approx(2 / 3) and v.details["during"] == pytest.approx(0.5)
    assert v.status == "fail" and set(v.details["below_bound"]) == {"outside"}
    assert Availability(outside=0.6, during=0.5).check(h).status == "pass"
    assert Availability(outside=0.6, during=0.6).check(h).status == "fail"


def _lossy(*, count: int | None = 1, held: bool = False, after_ends: bool = True) -> History:
    """a accepted before Redis came back empty, b after; the runner's loss report (count)."""
    h, clock = _history()
    _at(h, clock, 0.5, ACCEPTED, "a", request_id=1)
    _at(h, clock, 1.0, FAULT_INJECTED, fault="redis-restart-empty", target="redis")
    _at(h, clock, 2.0, FAULT_HEALED, fault="redis-restart-empty", target="redis")
    _at(h, clock, 3.0, ACCEPTED, "b", request_id=2)
    _at(h, clock, 9.0, STATUS, "a", status="finished" if held else "missing")
    _at(h, clock, 9.1, STATUS, "b", status="finished" if after_ends else "queued")
    if count is not None:
        _at(h, clock, 9.5, NOTE, text=DATA_LOSS_NOTE, redis_data_loss={"count": count} if count else None)
    return h


def test_data_loss_reported_wants_the_loss_the_report_and_the_service_going_on():
    assert DataLossReported().check(History()).status == "pass"  # no such fault: nothing to judge
    assert DataLossReported().check(_lossy()).status == "pass"
    assert DataLossReported().check(_lossy(count=0)).status == "fail"  # nobody said a word
    assert DataLossReported().check(_lossy(held=True)).status == "fail"  # the fault did not empty Redis
    assert DataLossReported().check(_lossy(after_ends=False)).status == "fail"  # the service stopped
    assert DataLossReported().check(_lossy(count=None)).status == "unknown"  # the report was never read
