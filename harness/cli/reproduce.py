"""`harness reproduce stuck-job`: the original incident, step by step, in under a minute.

A stock RQ worker (no recovery layer) picks up a SHAP job; its whole process tree is SIGKILLed
mid-job, as a container OOM kill or a platform restart does; a fresh stock worker comes up.
The job stays `started` and `diagnose-worker` says why. Then `repair-stuck-jobs` requeues it
and a worker with the fix finishes it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from harness.backends.config import StackConfig
from harness.backends.local.stack import Stack
from harness.defaults import SAMPLE_ROW as ROW

__all__ = ["reproduce_stuck_job"]


def _say(step: int, text: str) -> None:
    print(f"\n[{step}] {text}", flush=True)


def _run(argv: list[str]) -> int:
    print("    $ " + " ".join(argv[2:] if argv[:2] == [sys.executable, "-m"] else argv), flush=True)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    for line in (out.stdout + out.stderr).rstrip().splitlines():
        print("    | " + line)
    print(f"    (exit {out.returncode})", flush=True)
    return out.returncode


def reproduce_stuck_job(*, wait_s: float = 10.0) -> int:
    """Returns 0 when the story played out as told (stuck, then recovered), else 1."""
    t0 = time.monotonic()
    config = StackConfig(workers=1, fix="none")
    with Stack(config) as stack:
        q = ["--redis-url", stack.redis_url, "--queue", config.queue]
        _say(1, f"Stack up: Redis, the API ({stack.api_url}) and one STOCK RQ worker (no recovery layer).")
        job_id = stack.submit([ROW], chaos={"sleep_s": 8})["job_id"]
        print(f"    POST /analyze -> job {job_id} (an 8 s analysis)")
        view = stack.wait_status(job_id, ("started",), timeout=30)
        victim = stack.worker(view["worker"])
        print(f"    the job is `started` on worker {victim.name} (pid {victim.pid}, horse {victim.horse_pids()})")

        _say(2, "The worker's container is OOM-killed: SIGKILL to its whole process tree. A new worker starts.")
        victim.process.signal_tree(signal.SIGKILL)
        stack.add_worker()
        print(f"    waiting {wait_s:.0f} s (our fix would have recovered it in about 1 s) ...", flush=True)
        time.sleep(wait_s)
        view = stack.job(job_id)
        print(f"    GET /jobs/{job_id} -> status `{view['status']}`, worker {view['worker']} (dead)")
        stuck = view["status"] == "started"
        print("    Stock RQ would fail it only when a surviving worker's maintenance runs: ~13.5 min here.")

        _say(3, "diagnose-worker (read-only) sees it:")
        diag_rc = _run([sys.executable, "-m", "rq_recovery.diagnose_worker", *q])

        _say(4, "Deploy the fix. The stock worker stops; repair-stuck-jobs (render.yaml's preDeployCommand)")
        print("    requeues the job with the same atomic sweep the fixed workers run:")
        for handle in list(stack.workers):
            if handle.process.alive():
                handle.process.stop()
        _run([sys.executable, "-m", "rq_recovery.repair_stuck_jobs", *q, "--timeout", "1"])
        print(f"    GET /jobs/{job_id} -> status `{stack.job(job_id)['status']}`")

        _say(5, "A worker running the recovery layer (shap-worker) starts and picks the job up.")
        stack.add_worker(fix="bundled")
        view = stack.wait_terminal(job_id, timeout=60)
        print(f"    GET /jobs/{job_id} -> `{view['status']}` on {view['worker']}, attempt {view['attempts']}")
        print(f"    recovery: {view.get('recovery')}")
        ok = stuck and diag_rc == 1 and view["status"] == "finished"
    print(
        f"\n{'reproduced and recovered' if ok else 'did NOT play out as expected'} in {time.monotonic() - t0:.0f} s",
        flush=True,
    )
    return 0 if ok else 1
