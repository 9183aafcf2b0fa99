"""The horse's note to its worker crosses a fork, names its attempt, and is read once."""

from __future__ import annotations

import os

from rq_recovery.mailbox import Mailbox


def _in_a_child(action) -> None:
    pid = os.fork()
    if pid == 0:  # the "horse"
        try:
            action()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def test_a_note_posted_in_a_forked_child_reaches_the_parent_once():
    box = Mailbox()
    box.clear()
    _in_a_child(lambda: box.post("t1", {"state": "finished", "duration_s": 0.25}))
    assert box.take("t1") == {"state": "finished", "duration_s": 0.25, "token": "t1"}
    assert box.take("t1") is None  # taken: a later attempt never sees it


def test_another_attempts_note_is_not_taken_as_this_ones():
    box = Mailbox()
    box.post("old", {"state": "failed"})
    assert box.take("new") is None


def test_no_note_when_the_child_posted_nothing():
    box = Mailbox()
    box.post("t1", {"state": "finished"})
    box.clear()  # the worker clears before each attempt
    _in_a_child(lambda: None)
    assert box.take("t1") is None
