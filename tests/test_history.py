from __future__ import annotations

import json
import threading

import pytest

from harness.workload.history import EVENT_KINDS, Event, History


class FakeClock:
    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_record_stamps_time_since_start() -> None:
    clock = FakeClock(100.0)
    h = History(clock=clock)
    clock.now = 102.5
    e = h.record("accepted", "j1", request_id="r1")
    assert e == Event(t=2.5, kind="accepted", job_id="j1", data={"request_id": "r1"})
    assert h.events == (e,)
    assert len(h) == 1
    assert list(h) == [e]


def test_kinds_are_the_documented_set() -> None:
    assert EVENT_KINDS == (
        "submitted",
        "accepted",
        "rejected",
        "status",
        "fault_injected",
        "fault_healed",
        "terminal",
        "detected",
        "note",
        "witness",
        "reconcile",
    )


def test_unknown_kind_rejected() -> None:
    h = History(clock=FakeClock())
    with pytest.raises(ValueError, match="unknown event kind 'acepted'"):
        h.record("acepted", "j1")
    assert len(h) == 0


def test_events_is_a_snapshot() -> None:
    h = History(clock=FakeClock())
    snap = h.events
    h.record("note", text="later")
    assert snap == ()
    assert len(h.events) == 1


def test_event_is_frozen() -> None:
    e = Event(1.0, "note")
    with pytest.raises(AttributeError):
        e.t = 2.0  # type: ignore[misc]
    assert e.data == {} and e.job_id is None


def test_jobs_lists_accepted_ids_in_order_without_repeats() -> None:
    h = History(clock=FakeClock())
    h.record("submitted", request_id="r1")
    h.record("accepted", "b", request_id="r1")
    h.record("rejected", request_id="r2", status=503, error="busy")
    h.record("accepted", "a", request_id="r3")
    h.record("status", "c", status="queued")
    h.record("accepted", "b", request_id="r4")
    assert h.jobs() == ["b", "a"]


def test_concurrent_records_all_kept_in_time_order() -> None:
    counter = iter(range(10**6))
    h = History(clock=lambda: float(next(counter)))

    def work() -> None:
        for _ in range(500):
            h.record("note", text="x")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ts = [e.t for e in h.events]
    assert len(ts) == 4000
    assert ts == sorted(ts)
    assert len(set(ts)) == 4000


def test_jsonl_round_trip(tmp_path) -> None:
    clock = FakeClock(0.0)
    h = History(clock=clock)
    h.record("submitted", request_id="r1")
    clock.now = 0.25
    h.record("accepted", "j1", request_id="r1")
    clock.now = 1.5
    h.record(
        "terminal",
        "j1",
        status="finished",
        attempts=2,
        result={"base_value": [0.5], "shap_values": [[0.1, 0.2]], "predictions": [0.8]},
    )
    path = tmp_path / "history.jsonl"
    h.save(path)

    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[1]) == {
        "t": 0.25,
        "kind": "accepted",
        "job_id": "j1",
        "data": {"request_id": "r1"},
    }

    loaded = History.load(path)
    assert loaded.events == h.events
    assert loaded.jobs() == ["j1"]
    # A loaded history stays appendable.
    loaded.record("note", text="rechecked")
    assert len(loaded) == 4


def test_load_skips_blank_lines(tmp_path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"t": 0, "kind": "note", "job_id": null, "data": {}}\n\n')
    assert History.load(path).events == (Event(0.0, "note"),)


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("{not json", "Expecting property name"),
        ('{"t": 1.0, "job_id": null, "data": {}}', "missing field 'kind'"),
        ('{"t": 1.0, "kind": "bogus", "job_id": null, "data": {}}', "unknown event kind 'bogus'"),
        ("[1, 2]", "not a JSON object"),
        ('{"t": 1.0, "kind": "note", "job_id": 7, "data": {}}', "job_id must be a string"),
        ('{"t": 1.0, "kind": "note", "job_id": null, "data": [1]}', "data must be an object"),
        ('{"t": "soon", "kind": "note", "job_id": null, "data": {}}', "could not convert"),
    ],
)
def test_load_malformed_line_names_line_number(tmp_path, bad_line: str, reason: str) -> None:
    path = tmp_path / "h.jsonl"
    good = '{"t": 0.0, "kind": "note", "job_id": null, "data": {}}'
    path.write_text(f"{good}\n{good}\n{bad_line}\n")
    with pytest.raises(ValueError, match=r"h\.jsonl:3: malformed history line") as info:
        History.load(path)
    assert reason in str(info.value)
