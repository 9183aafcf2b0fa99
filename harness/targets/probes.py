"""Probe jobs: what the harness enqueues onto a target's queues when it submits through `rq`.

They must be importable where the target's workers run (install the harness there: it is light
to import, this module needs only redis). Each execution records its start and its end in the
witness (`harness.targets.witness`), a Redis the harness owns and no fault touches, under a fresh
execution id that the result carries too: that is how the checkers count executions and tell a
zombie's result from the current attempt's without asking the service.

    run_probe("compute", {"rounds": 2000, "seed": "r0001"}, witness="redis://127.0.0.1:7001/0")
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
import uuid
from typing import Any

__all__ = ["PROBES", "expected_value", "run_probe"]

#: Probe kinds: compute (a hash chain, checkable), sleep (then compute), hang in Python (RQ's
#: SIGALRM timeout can end it), hang in C (SIGALRM blocked: only the worker parent can), hold
#: memory (allocate and touch `mb`, hold `hold_s`), raise (the job fails, as a bug would).
PROBES = ("compute", "sleep", "hang_python", "hang_c", "hold_memory", "raise")

_RECORD = """
local t = redis.call('TIME')
return redis.call('RPUSH', KEYS[1], string.format('%d.%06d', t[1], t[2]) .. ' ' .. ARGV[1])
"""


def expected_value(seed: str, rounds: int) -> str:
    """What a compute probe returns: `rounds` of SHA-256 over the seed (checkable by anyone)."""
    digest = seed.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def _work(kind: str, params: dict[str, Any]) -> Any:
    if kind == "sleep":
        time.sleep(float(params.get("seconds", 1.0)))
    elif kind == "hang_python":
        while True:  # interruptible: RQ's SIGALRM timeout fires
            time.sleep(0.1)
    elif kind == "hang_c":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        while True:
            time.sleep(3600)
    elif kind == "hold_memory":
        hog = bytearray(int(params.get("mb", 100)) * 1024 * 1024)
        for i in range(0, len(hog), 4096):  # resident, as the OOM killer counts
            hog[i] = 1
        time.sleep(float(params.get("hold_s", 3.0)))
        del hog
    elif kind == "raise":
        raise RuntimeError(str(params.get("message", "probe raised on purpose")))
    elif kind != "compute":
        raise ValueError(f"unknown probe {kind!r}; expected one of {PROBES}")
    return expected_value(str(params.get("seed", "")), int(params.get("rounds", 1000)))


def run_probe(kind: str, params: dict[str, Any], *, witness: str, probe_id: str) -> dict[str, Any]:
    """Run probe `kind`, recording start and end in the witness at `witness` (a Redis URL).

    The entries go to ``exec:<RQ job id>`` (``exec:<probe_id>`` outside a worker); each is
    ``<witness time> <event> <execution id> <pid> <host> [<outcome>]``."""
    from redis import Redis

    try:
        from rq import get_current_job

        job = get_current_job()
    except Exception:  # noqa: BLE001 - outside a worker, or an rq without it
        job = None
    key = f"exec:{job.id if job is not None else probe_id}"
    execution_id = uuid.uuid4().hex
    client = Redis.from_url(witness, socket_timeout=5, socket_connect_timeout=5)
    record = client.register_script(_RECORD)
    where = f"{os.getpid()} {socket.gethostname()}"
    record(keys=[key], args=[f"start {execution_id} {where}"])
    outcome = "raised"
    try:
        value = _work(kind, params)
        outcome = "returned"
        return {"execution_id": execution_id, "probe": kind, "value": value}
    finally:
        try:
            record(keys=[key], args=[f"end {execution_id} {where} {outcome}"])
        finally:
            client.close()
