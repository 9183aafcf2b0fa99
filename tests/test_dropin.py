"""The recovery layer in an RQ app nobody here wrote: `rq worker -w ...RecoveringWorker`.

Real Redis, real `rq worker` processes of RQ's own CLI, pickled jobs of plain functions
(`tests/apps/plain_rq_app.py`), real signals. Executions are counted from the app's witness
files, never from the fix's bookkeeping. The worker's connection points at db 4 (as RQ's own
tests do): the fix must use it, not a REDIS_URL of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from redis import Redis
from rq import Callback, Queue, Retry
from rq.command import send_kill_horse_command, send_stop_job_command
from rq.job import Dependency, Job, JobStatus

from harness.backends.local.processes import ManagedProcess, kill_tree
from harness.wait import wait_until
from rq_recovery.keys import PREFIX

pytestmark = pytest.mark.integration

TESTS = Path(__file__).parent
RQ = str(Path(sys.executable).parent / "rq")
APP = "apps.plain_rq_app"
#: Short leases so that a test waits seconds, not the production 6 s.
FAST = {"HEARTBEAT_INTERVAL": "0.5", "LIVENESS_TTL": "2", "SWEEP_INTERVAL": "0.5", "CONNECTION_GRACE": "0.3"}


def _db4(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/4"


@pytest.fixture
def app(redis_only, tmp_path):
    url = _db4(redis_only.redis_url)
    conn = Redis.from_url(url)
    conn.flushdb()
    witness = tmp_path / "witness"
    witness.mkdir()
    run_id = f"dropin-{uuid.uuid4().hex[:8]}"
    procs: list[ManagedProcess] = []

    def worker(name: str, *queues: str, burst: bool = False, cls: str = "RecoveringWorker", env=None, url=url):
        klass = "rq.worker.Worker" if cls == "stock" else f"rq_recovery.worker_process_fix.{cls}"
        argv = [RQ, "worker", "-w", klass, "--url", url, "--name", name, *(["--burst"] if burst else []), *queues]
        proc_env = {**os.environ, "PYTHONPATH": str(TESTS), "HARNESS_PROC": name, **FAST, **(env or {})}
        proc = ManagedProcess(name, argv, env=proc_env, log_dir=tmp_path / "logs", run_id=run_id).start()
        procs.append(proc)
        return proc

    def tails() -> str:
        return "\n".join(p.log_tail() for p in procs)

    def started(job: Job, timeout: float = 20) -> str:
        """Wait until a worker runs `job`; returns its name."""

        def running() -> bool:
            job.refresh()
            return job.get_status(refresh=False) == JobStatus.STARTED and bool(job.worker_name)

        wait_until(
            running,
            what=f"job {job.id} started",
            timeout=timeout,
            log_tail=tails,
        )
        return str(job.worker_name)

    def ends(job: Job, timeout: float = 40) -> str:
        wait_until(
            lambda: job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED),
            what=f"job {job.id} ended",
            timeout=timeout,
            log_tail=tails,
        )
        job.refresh()
        return str(job.get_status(refresh=False).value)

    def runs(job: Job, what: str = "start") -> int:
        return sum(1 for p in witness.iterdir() if p.name.startswith(job.id + ".") and p.name.endswith("." + what))

    def registered(*names: str) -> None:
        wait_until(
            lambda: all(conn.exists(f"rq:worker:{n}") for n in names),
            what=f"workers {names} registered",
            timeout=20,
            log_tail=tails,
        )

    def queue(name: str = "app-jobs") -> Queue:
        return Queue(name, connection=conn)

    def workers(*names: str) -> dict[str, ManagedProcess]:
        """RecoveringWorkers on app-jobs, registered in RQ."""
        started = {n: worker(n, "app-jobs") for n in names}
        registered(*started)
        return started

    yield SimpleNamespace(
        url=url,
        conn=conn,
        witness=str(witness),
        worker=worker,
        started=started,
        ends=ends,
        runs=runs,
        registered=registered,
        queue=queue,
        workers=workers,
        procs=procs,
    )
    for proc in procs:
        proc.stop()
    conn.flushdb()
    conn.close()


def _kill(proc: ManagedProcess) -> None:
    assert proc.signal_tree(signal.SIGKILL), f"{proc.name} was not running"


def test_rq_cli_worker_recovers_a_pickled_job_after_a_whole_tree_sigkill(app):
    workers = app.workers("w1", "w2")
    job = app.queue().enqueue(f"{APP}.work", 3, app.witness)
    victim = app.started(job)
    _kill(workers[victim])
    assert app.ends(job) == "finished"
    assert job.worker_name != victim
    assert (app.runs(job, "start"), app.runs(job, "end")) == (2, 1)
    assert job.return_value() == "slept 3"


def test_rq_worker_pool_runs_the_fix_and_recovers_a_killed_pool_worker(app, tmp_path):
    argv = [RQ, "worker-pool", "-w", "rq_recovery.worker_process_fix.RecoveringWorker", "-n", "2", "-u", app.url]
    env = {**os.environ, "PYTHONPATH": str(TESTS), "HARNESS_PROC": "pool", **FAST}
    pool = ManagedProcess("pool", [*argv, "app-jobs"], env=env, log_dir=tmp_path / "logs", run_id="pool").start()
    app.procs.append(pool)
    wait_until(lambda: app.conn.scard("rq:workers:app-jobs") >= 2, what="two pool workers", timeout=30)
    job = app.queue().enqueue(f"{APP}.work", 3, app.witness)
    victim = app.started(job)
    pid = int(app.conn.hget(f"rq:worker:{victim}", "pid") or 0)
    assert pid and kill_tree(pid), f"pool worker {victim} not found"
    assert app.ends(job) == "finished"
    assert job.worker_name != victim and (app.runs(job, "start"), app.runs(job, "end")) == (2, 1)
    assert app.conn.exists(f"{PREFIX}worker:{job.worker_name}")  # the pool's workers run the fix


def test_burst_worker_sweeps_a_dead_workers_job_before_it_quits(app):
    w1 = app.worker("w1", "app-jobs")
    app.registered("w1")
    job = app.queue().enqueue(f"{APP}.work", 2, app.witness)
    app.started(job)
    _kill(w1)
    burst = app.worker("b1", "app-jobs", burst=True)  # starts while the dead worker's lease still runs
    assert app.ends(job, timeout=30) == "finished"
    assert job.worker_name == "b1"
    wait_until(lambda: not burst.alive(), what="burst worker quit", timeout=20)


def test_dependents_of_a_recovered_parent_run_exactly_once(app):
    workers = app.workers("w1", "w2")
    q = app.queue()
    parent = q.enqueue(f"{APP}.work", 3, app.witness)
    child = q.enqueue(f"{APP}.work", 0.1, app.witness, depends_on=parent)
    _kill(workers[app.started(parent)])
    assert app.ends(parent) == "finished"
    assert app.ends(child) == "finished"
    assert (app.runs(parent, "end"), app.runs(child, "start")) == (1, 1)


def test_a_recovered_job_that_has_dependencies_is_requeued(app):
    """Requeueing a job with `depends_on` must not run RQ's dependency check inside a MULTI."""
    workers = app.workers("w1", "w2")
    q = app.queue()
    parent = q.enqueue(f"{APP}.work", 0.1, app.witness)
    child = q.enqueue(f"{APP}.work", 3, app.witness, depends_on=parent)
    assert app.ends(parent) == "finished"
    _kill(workers[app.started(child)])
    assert app.ends(child) == "finished"
    assert (app.runs(child, "start"), app.runs(child, "end")) == (2, 1)


def test_rq_retry_count_is_not_spent_on_a_dead_worker(app):
    workers = app.workers("w1", "w2")
    job = app.queue().enqueue(f"{APP}.work", 3, app.witness, retry=Retry(max=2))
    _kill(workers[app.started(job)])
    assert app.ends(job) == "finished"
    assert job.retries_left == 2  # RQ's retries count the job's own failures, not the fix's recoveries
    assert app.runs(job, "end") == 1


def test_a_stopped_job_is_never_resurrected(app):
    w1 = app.worker("w1", "app-jobs")
    app.registered("w1")
    job = app.queue().enqueue(f"{APP}.work", 10, app.witness)
    app.started(job)
    send_stop_job_command(app.conn, job.id)
    assert app.ends(job) == "stopped"
    time.sleep(2 * 2 + 1)  # two leases and some sweeps
    assert job.get_status(refresh=True) == JobStatus.STOPPED
    assert app.runs(job) == 1 and w1.alive()


def test_kill_horse_command_fails_the_job_as_rq_does(app):
    app.worker("w1", "app-jobs")
    app.registered("w1")
    job = app.queue().enqueue(f"{APP}.work", 10, app.witness)
    send_kill_horse_command(app.conn, app.started(job))
    assert app.ends(job) == "failed"
    time.sleep(3)
    assert job.get_status(refresh=True) == JobStatus.FAILED and app.runs(job) == 1


def test_a_job_the_fix_gives_up_on_goes_through_rqs_failure_handling(app):
    env = {"MAX_ATTEMPTS": "1"}
    workers = {n: app.worker(n, "app-jobs", env=env) for n in ("w1", "w2")}
    app.registered(*workers)
    q = app.queue()
    job = q.enqueue(f"{APP}.work", 30, app.witness, on_failure=Callback(f"{APP}.on_failure"))
    dependent = q.enqueue(f"{APP}.work", 0.1, app.witness, depends_on=Dependency(jobs=[job], allow_failure=True))
    _kill(workers[app.started(job)])
    assert app.ends(job) == "failed"
    assert "attempts exhausted (1/1)" in (job.latest_result().exc_string or "")
    assert app.ends(dependent) == "finished"  # allow_failure dependents are enqueued, as by RQ's cleanup
    time.sleep(2)
    assert app.runs(job, "on_failure") == 1
    assert app.runs(dependent) == 1


def test_a_job_goes_back_to_its_own_queue(app):
    both = app.worker("w1", "high", "low")
    app.registered("w1")
    job = app.queue("low").enqueue(f"{APP}.work", 3, app.witness)
    app.started(job)
    app.worker("w2", "low")  # listens only to the job's own queue
    app.registered("w2")
    _kill(both)
    assert app.ends(job) == "finished"
    assert (job.origin, job.worker_name) == ("low", "w2")


def test_job_timeout_minus_one_is_never_timed_out(app):
    app.worker("w1", "app-jobs", env={"JOB_TIMEOUT": "1", "HARD_KILL_GRACE": "0.5"})
    app.registered("w1")
    job = app.queue().enqueue(f"{APP}.work", 3, app.witness, job_timeout=-1)
    assert app.ends(job) == "finished"
    assert app.runs(job) == 1


def test_worker_starts_and_works_under_an_acl_user_without_client_commands(app, redis_only):
    admin = Redis.from_url(redis_only.redis_url)
    admin.execute_command("ACL", "SETUSER", "noclient", "on", ">pw", "~*", "&*", "+@all", "-client")
    try:
        scheme, rest = app.url.split("://", 1)
        host = rest.split("@")[-1]
        url = f"{scheme}://noclient:pw@{host}"
        w1 = app.worker("w1", "app-jobs", url=url)
        app.registered("w1")
        job = app.queue().enqueue(f"{APP}.work", 0.2, app.witness)
        assert app.ends(job) == "finished"
        assert "connection_check_off" in w1.log_tail(200)
    finally:
        admin.execute_command("ACL", "DELUSER", "noclient")
        admin.close()


_WORK_TWICE = """
import sys
from redis import Redis
from rq import Queue
from rq_recovery.worker_process_fix import RecoveringWorker
conn = Redis.from_url(sys.argv[1])
q = Queue("twice", connection=conn)
worker = RecoveringWorker([q], connection=conn)
first = q.enqueue("apps.plain_rq_app.work", 0.1, sys.argv[2])
worker.work(burst=True)
second = q.enqueue("apps.plain_rq_app.work", 0.1, sys.argv[2])
worker.work(burst=True)
print(first.get_status(refresh=True).value, second.get_status(refresh=True).value)
"""


def test_key_prefix_and_connection_prefix_are_settings(app):
    """Two apps sharing one Redis keep the fix's bookkeeping apart."""
    w1 = app.worker("w1", "app-jobs", env={"KEY_PREFIX": "app1:", "CONNECTION_PREFIX": "app1fix:"})
    app.registered("w1")
    job = app.queue().enqueue(f"{APP}.work", 0.5, app.witness)
    app.started(job)
    names = {c.get("name") for c in app.conn.client_list()}
    assert "app1fix:w1" in names and "shapfix:w1" not in names
    assert app.ends(job) == "finished"
    assert app.conn.exists(f"app1:track:{job.id}") and not app.conn.keys("shap:*")
    assert w1.alive()


def test_a_worker_can_work_twice_in_one_process(app):
    """The lifeline restarts with each `work()`: a second run used to block for ever."""
    env = {**os.environ, **FAST, "PYTHONPATH": str(TESTS)}
    out = subprocess.run(
        [sys.executable, "-c", _WORK_TWICE, app.url, app.witness], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["finished", "finished"], out.stdout[-2000:]


def test_repair_watch_is_a_standalone_sweeper_until_sigterm(app, tmp_path):
    """No long-lived worker of ours: the only worker dies, `repair-stuck-jobs --watch` moves its job on."""
    w1 = app.worker("w1", "app-jobs")
    app.registered("w1")
    job = app.queue().enqueue(f"{APP}.work", 30, app.witness)
    app.started(job)
    argv = [
        sys.executable,
        "-m",
        "rq_recovery.repair_stuck_jobs",
        "--watch",
        "--interval",
        "0.5",
        "--queue",
        "app-jobs",
    ]
    env = {**os.environ, **FAST, "REDIS_URL": app.url, "HARNESS_PROC": "watch"}
    watch = ManagedProcess("watch", argv, env=env, log_dir=tmp_path / "logs", run_id="watch").start()
    app.procs.append(watch)
    _kill(w1)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.QUEUED, what="job requeued by --watch", timeout=20)
    assert watch.alive()
    watch.proc.send_signal(signal.SIGTERM)
    assert watch.proc.wait(timeout=10) == 0
    assert job.id in watch.log_tail(50)


def _repair(app, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **FAST, "REDIS_URL": app.url}
    argv = [sys.executable, "-m", "rq_recovery.repair_stuck_jobs", "--queue", "app-jobs", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def test_repair_never_touches_the_job_of_a_live_stock_worker(app):
    app.worker("s1", "app-jobs", cls="stock")
    app.registered("s1")
    job = app.queue().enqueue(f"{APP}.work", 6, app.witness)
    app.started(job)
    time.sleep(3)  # RQ's own heartbeat on the job is now older than --timeout
    out = _repair(app, "--timeout", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["adopted"] == 0
    assert app.ends(job) == "finished"
    assert app.runs(job) == 1


def test_repair_adopts_a_dead_stock_workers_job_whose_execution_record_expired(app):
    stock = app.worker("s1", "app-jobs", cls="stock")
    app.registered("s1")
    job = app.queue().enqueue(f"{APP}.work", 30, app.witness)
    app.started(job)
    time.sleep(2.5)
    _kill(stock)
    # RQ 3 keeps an execution record ~90 s and its index ~150 s: look as if the record expired.
    for key in app.conn.scan_iter("rq:execution:*"):
        if app.conn.type(key) == b"hash":
            app.conn.delete(key)
    dry_text = _repair(app, "--timeout", "2", "--dry-run")
    dry_json = _repair(app, "--timeout", "2", "--dry-run", "--json")
    assert dry_text.returncode == dry_json.returncode == 1, (dry_text.stderr, dry_json.stderr)
    assert json.loads(dry_json.stdout)["adopted"] == 1
    assert f"would adopt {job.id}" in dry_text.stdout, dry_text.stdout
    assert job.get_status(refresh=True) == JobStatus.STARTED  # a dry run changes nothing
    out = _repair(app, "--timeout", "2", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["adopted"] == 1 and report["requeued"] == 1, report
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    app.worker("w1", "app-jobs")
    assert app.ends(job) == "finished"
    assert app.runs(job, "end") == 1
