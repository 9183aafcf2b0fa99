"""The recovery layer against real Redis, real worker processes and real signals.

Stacks run with short leases (harness.defaults.FAST_LEASES) so each case takes seconds; the
production defaults are measured by the benchmarks, not asserted here.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import subprocess
import sys
import time

import pytest
import requests
from redis import ConnectionPool, Redis
from redis.exceptions import ResponseError
from rq.job import JobStatus

from harness.defaults import FAST_LEASES
from harness.wait import eventually
from rq_recovery.tracking import Tracker, live_key, track_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROWS = [[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.002, 0.02, -0.017]]


def fast(**extra: str) -> dict[str, str]:
    return {**FAST_LEASES, **extra}


def submit(stack, **chaos) -> str:
    return stack.submit(ROWS, chaos=chaos)["job_id"] if chaos else stack.submit(ROWS)["job_id"]


def wait_running(stack, job_id: str, *, attempt: int = 1, timeout: float = 30) -> dict:
    def running() -> dict | None:
        view = stack.job(job_id)
        return view if view["status"] == "started" and view["attempts"] >= attempt and view["worker"] else None

    view = eventually(running, timeout=timeout, interval=0.02)
    if view is None:
        raise AssertionError(f"job {job_id} never ran attempt {attempt}: {stack.job(job_id)}")
    return view


def assert_additive(result: dict) -> None:
    for row, pred in zip(result["shap_values"], result["predictions"], strict=True):
        assert abs(result["base_value"] + sum(row) - pred) <= 1e-6 * max(1.0, abs(pred))


def kill_worker(stack, name: str) -> None:
    assert stack.worker(name).process.signal_tree(signal.SIGKILL), f"worker {name} was not running"


def test_fix_runs_inside_the_worker_process(stack_factory):
    stack = stack_factory(workers=1, env=fast())
    handle = stack.workers[0]
    info = eventually(lambda: stack.redis.hgetall(f"shap:worker:{handle.name}"), timeout=5) or {}
    # Written by the fix's lifeline thread, from the pid of the process the harness started.
    assert info["fix"] == "bundled"
    assert int(info["pid"]) == handle.pid
    beat = float(info["beat_at"])
    time.sleep(1.2)
    assert float(stack.redis.hget(f"shap:worker:{handle.name}", "beat_at")) > beat


def test_killed_worker_job_finishes_on_another_worker(stack_factory):
    stack = stack_factory(workers=2, env=fast())
    job_id = submit(stack, sleep_s=3)
    victim = wait_running(stack, job_id)["worker"]
    t0 = time.monotonic()
    kill_worker(stack, victim)
    requeued = wait_running(stack, job_id, attempt=2, timeout=20)
    requeue_s = time.monotonic() - t0
    view = stack.wait_terminal(job_id, timeout=30)
    assert view["status"] == "finished"
    assert view["attempts"] == 2
    assert view["worker"] != victim and requeued["worker"] == view["worker"]
    assert "abandoned" in view["recovery"] and victim in view["recovery"]
    assert_additive(view["result"])
    # bound: lease 2 s + sweep 0.5 s (the connection check is usually faster), plus slack
    assert requeue_s < 10, requeue_s


@pytest.mark.parametrize("repair", ["cli", "admin"])
def test_no_worker_alive_then_repair_and_a_new_worker_finishes_it(stack_factory, repair):
    stack = stack_factory(workers=1, env=fast(API_SWEEPER="0"))
    job_id = submit(stack, sleep_s=2)
    victim = wait_running(stack, job_id)["worker"]
    kill_worker(stack, victim)
    time.sleep(3)  # past the 2 s lease: with no sweeper anywhere, nothing moves it
    assert stack.job(job_id)["status"] == "started"
    if repair == "cli":
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "rq_recovery.repair_stuck_jobs",
                "--redis-url",
                stack.redis_url,
                "--queue",
                stack.config.queue,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        counts = json.loads(out.stdout)
    else:
        r = requests.post(f"{stack.api_url}/admin/cleanup_jobs", headers=stack.admin_headers, timeout=10)
        assert r.status_code == 200
        counts = r.json()
    assert counts["requeued"] == 1 and counts["failed"] == 0
    assert stack.job(job_id)["status"] == "queued"
    stack.add_worker()
    view = stack.wait_terminal(job_id, timeout=30)
    assert (view["status"], view["attempts"]) == ("finished", 2)


def test_attempts_exhausted_ends_failed_with_the_reason(stack_factory):
    stack = stack_factory(workers=2, env=fast(MAX_ATTEMPTS="2"))
    job_id = submit(stack, sleep_s=30)
    for attempt in (1, 2):
        victim = wait_running(stack, job_id, attempt=attempt)["worker"]
        kill_worker(stack, victim)
        stack.add_worker(wait=False)  # keep a live worker around, as a platform restart would
    view = stack.wait_terminal(job_id, timeout=30)
    assert view["status"] == "failed"
    assert view["attempts"] == 2
    assert "abandoned" in view["error"] and "attempts exhausted (2/2)" in view["error"]


@pytest.mark.parametrize("max_attempts,expected", [("3", "finished"), ("1", "failed")])
def test_killed_work_horse_is_retried_then_failed(stack_factory, max_attempts, expected):
    stack = stack_factory(workers=1, env=fast(MAX_ATTEMPTS=max_attempts))
    job_id = submit(stack, sleep_s=2)
    wait_running(stack, job_id)
    horses = stack.workers[0].horse_pids()
    assert horses, "no work-horse found under the worker"
    for pid in horses:
        subprocess.run(["kill", "-9", str(pid)], check=False)
    view = stack.wait_terminal(job_id, timeout=30)
    assert view["status"] == expected
    if expected == "finished":
        assert view["attempts"] == 2 and "work-horse died" in view["recovery"]
    else:
        assert "work-horse died" in view["error"] and "signal 9" in view["error"]
    assert stack.workers[0].process.alive()


def test_paused_worker_zombie_result_is_fenced_off(stack_factory):
    stack = stack_factory(workers=2, env=fast())
    job_id = submit(stack, sleep_s=3)
    victim = wait_running(stack, job_id)["worker"]
    stack.worker(victim).process.signal_tree(signal.SIGSTOP)
    try:
        second = wait_running(stack, job_id, attempt=2, timeout=20)
        assert second["worker"] != victim
        view = stack.wait_terminal(job_id, timeout=30)
        assert view["status"] == "finished"
    finally:
        stack.worker(victim).process.signal_tree(signal.SIGCONT)
    # The zombie's horse wakes up past its sleep, finishes, and must be refused.
    eventually(lambda: stack.job(job_id)["late_completions_rejected"] >= 1, timeout=20, interval=0.1)
    final = stack.job(job_id)
    assert final["late_completions_rejected"] == 1
    assert (final["status"], final["worker"], final["attempts"]) == ("finished", second["worker"], 2)
    assert final["result"] == view["result"]
    assert int(stack.redis.hget(f"shap:stats:{stack.config.queue}", "late_completions_rejected")) == 1


@pytest.mark.parametrize("hang,words", [("python", "JobTimeoutException"), ("c", "hung for")])
def test_hung_job_fails_at_its_timeout_as_in_rq(stack_factory, hang, words):
    """A timeout is RQ's outcome (failed, or the job's own Retry), not a death: no extra attempt.

    The fix only ends a horse hung in C code sooner: at JOB_TIMEOUT + HARD_KILL_GRACE, where RQ
    waits JOB_TIMEOUT + 60 s.
    """
    stack = stack_factory(workers=1, env=fast(JOB_TIMEOUT="2", HARD_KILL_GRACE="1", MAX_ATTEMPTS="2"))
    job_id = submit(stack, hang=hang)
    t0 = time.monotonic()
    view = stack.wait_terminal(job_id, timeout=60)
    elapsed = time.monotonic() - t0
    assert view["status"] == "failed"
    assert view["attempts"] == 1
    assert words in view["error"] and "attempts exhausted" not in view["error"]
    assert elapsed < 20, elapsed  # one attempt of 2 s (+1 s grace for C hangs): far from RQ's 180 s + 60 s
    assert stack.workers[0].process.alive()


def test_sigterm_hands_back_a_job_that_would_outlive_the_grace(stack_factory):
    stack = stack_factory(workers=2, env=fast(SHUTDOWN_GRACE="1"))
    job_id = submit(stack, sleep_s=30)
    victim = wait_running(stack, job_id)["worker"]
    t0 = time.monotonic()
    stack.worker(victim).process.proc.send_signal(signal.SIGTERM)
    second = wait_running(stack, job_id, attempt=1, timeout=20)
    while second["worker"] == victim:
        second = wait_running(stack, job_id, attempt=1, timeout=20)
    assert time.monotonic() - t0 < 10
    assert "handed back" in second["recovery"]
    stack.worker(victim).process.proc.wait(timeout=15)  # the worker exits: a warm shutdown


def test_sigterm_lets_a_short_job_finish(stack_factory):
    stack = stack_factory(workers=1, env=fast(SHUTDOWN_GRACE="20"))
    job_id = submit(stack, sleep_s=1)
    worker = wait_running(stack, job_id)["worker"]
    stack.worker(worker).process.proc.send_signal(signal.SIGTERM)
    view = stack.wait_terminal(job_id, timeout=30)
    assert (view["status"], view["attempts"], view["worker"]) == ("finished", 1, worker)


def _sweep_once(url: str, queue: str, name: str, barrier, results) -> None:
    tracker = Tracker(Redis.from_url(url), queue, liveness_ttl=2, max_attempts=3)
    barrier.wait()
    results.put(tracker.sweep(by=name, connection_check=False).requeued)


def test_four_racing_sweepers_requeue_each_job_exactly_once(stack_factory):
    # Every sweeper recovers every queue's jobs: keep the API's own out of this race.
    stack = stack_factory(workers=0, env={"API_SWEEPER": "false"})
    conn = Redis.from_url(stack.redis_url)
    tracker = Tracker(conn, "race", liveness_ttl=2, max_attempts=3)
    ids = []
    for _ in range(50):
        job = tracker.enqueue("shap_service.jobs.analyze", kwargs={}, job_timeout=10, result_ttl=60)
        conn.lpop("rq:queue:race")  # "dequeued" by a worker that then died
        job.set_status(JobStatus.STARTED)  # what the worker's horse does
        assert tracker.start(job.id, token=f"t-{job.id}", worker="ghost", pid=1) == 1
        conn.delete(live_key(job.id))  # its lease ran out
        ids.append(job.id)
    # A Redis up for less than a lease holds leases that may have lapsed while it was down (see
    # test_leases_that_lapsed_while_redis_was_down...); this one just started: wait that out.
    past_the_restart_hold(tracker)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_sweep_once, args=(stack.redis_url, "race", f"s{i}", barrier, results)) for i in range(4)
    ]
    for p in procs:
        p.start()
    counts = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    assert sum(counts) == 50, counts
    queued = [x.decode() for x in conn.lrange("rq:queue:race", 0, -1)]
    assert sorted(queued) == sorted(ids)
    assert all(conn.hget(track_key(j), "requeues") == b"1" for j in ids)


def past_the_restart_hold(tracker: Tracker) -> None:
    """Wait until Redis has surely been up a lease: no lease is held for its worker any more."""
    while tracker.redis_started()[1] < tracker.liveness_ttl:
        time.sleep(0.1)


def _snapshot(conn: Redis) -> dict:
    return {k: conn.dump(k) for k in sorted(conn.keys("*"))}


def test_leases_that_lapsed_while_redis_was_down_get_one_lease_to_beat_again(stack_factory):
    """Lease expiry is absolute, so a Redis restart makes every worker look dead.

    With AOF, Redis is SIGKILLed and comes back after longer than the lease. A sweep right then
    must leave the job alone (its worker may be fine), the worker's next beat re-arms it, and a
    job whose worker never beats again is recovered once Redis has been up a whole lease.
    """
    stack = stack_factory(workers=0, redis_aof=True)
    conn = Redis.from_url(stack.redis_url)
    tracker = Tracker(conn, "restart", liveness_ttl=2, max_attempts=3)
    alive, dead = (tracker.enqueue("shap_service.jobs.analyze", kwargs={}, job_timeout=10, result_ttl=60) for _ in "ab")
    for job in (alive, dead):
        conn.lpop("rq:queue:restart")
        job.set_status(JobStatus.STARTED)  # what the worker's horse does
        assert tracker.start(job.id, token=f"t-{job.id}", worker=f"w-{job.id}", pid=1) == 1
    stack.restart_redis(down_s=2.5)  # longer than the 2 s lease
    conn.connection_pool.disconnect()
    assert conn.exists(live_key(alive.id), live_key(dead.id)) == 0  # both leases ran out while down
    report = tracker.sweep(by="test", connection_check=False)
    assert report.requeued == 0 and report.held_s > 0, report
    assert tracker.beat(alive.id, f"t-{alive.id}")  # its worker reconnects and beats
    while tracker.redis_started()[1] < tracker.liveness_ttl:
        assert tracker.sweep(by="test", connection_check=False).requeued == 0
        assert tracker.beat(alive.id, f"t-{alive.id}")
        time.sleep(0.2)
    report = tracker.sweep(by="test", connection_check=False)
    assert [a["job_id"] for a in report.actions] == [dead.id] and report.requeued == 1, report
    assert tracker.read(alive.id)["state"] == "running"
    # --force is the operator's override: it does not wait.
    stack.restart_redis(down_s=0)
    conn.connection_pool.disconnect()
    assert tracker.sweep(by="test", connection_check=False, force=True).requeued == 1


def test_where_info_is_refused_leases_are_judged_at_once(redis_only):
    """Some managed Redis refuse INFO: then no restart can be seen, and nothing is held."""
    conn = redis_only.redis
    conn.acl_setuser("noinfo", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all", "-info"])
    pool = conn.connection_pool
    kwargs = {**pool.connection_kwargs, "username": "noinfo", "password": "pw"}
    limited = Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))
    try:
        with pytest.raises(ResponseError):
            limited.info("server")
        assert Tracker(limited, "noinfo", liveness_ttl=2, max_attempts=3).redis_started()[1] >= 1 << 30
        assert Tracker(conn, "noinfo", liveness_ttl=2, max_attempts=3).redis_started()[1] < 1 << 30
    finally:
        limited.close()
        conn.acl_deluser("noinfo")


def test_start_retried_with_its_token_is_the_same_attempt(redis_only):
    """A worker retries START when the reply was lost: same token, same attempt, no refusal."""
    conn = redis_only.redis
    tracker = Tracker(conn, "idem", liveness_ttl=2, max_attempts=3)
    job = tracker.enqueue("shap_service.jobs.analyze", kwargs={}, job_timeout=10, result_ttl=60)
    assert tracker.start(job.id, token="a", worker="w1", pid=1) == 1
    assert tracker.start(job.id, token="a", worker="w1", pid=1) == 1
    assert tracker.start(job.id, token="b", worker="w2", pid=2) == -2  # lease held by "a"
    conn.delete(live_key(job.id))
    assert tracker.start(job.id, token="b", worker="w2", pid=2) == 2
    assert tracker.start(job.id, token="a", worker="w1", pid=1) == -2


def test_diagnose_and_dry_run_change_nothing(stack_factory):
    stack = stack_factory(workers=1, env=fast(API_SWEEPER="0"))
    job_id = submit(stack, sleep_s=30)
    kill_worker(stack, wait_running(stack, job_id)["worker"])
    time.sleep(2.5)
    conn = Redis.from_url(stack.redis_url)
    before = _snapshot(conn)
    base = [sys.executable, "-m"]
    args = ["--redis-url", stack.redis_url, "--queue", stack.config.queue]
    diag = subprocess.run([*base, "rq_recovery.diagnose_worker", *args, "--json"], capture_output=True, text=True)
    assert diag.returncode == 1, diag.stderr
    report = json.loads(diag.stdout)
    assert [j["job_id"] for j in report["stuck"]] == [job_id]
    assert any("repair-stuck-jobs" in r for r in report["recommendations"])
    text = subprocess.run([*base, "rq_recovery.diagnose_worker", *args], capture_output=True, text=True)
    assert text.returncode == 1 and job_id in text.stdout
    dry = subprocess.run([*base, "rq_recovery.repair_stuck_jobs", *args, "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 1 and job_id in dry.stdout and "would requeue" in dry.stdout
    assert _snapshot(conn) == before
    assert stack.job(job_id)["status"] == "started"


def test_stock_rq_leaves_the_job_started_past_the_bound(stack_factory):
    """The bug this project fixes: with plain `rq worker`, a killed worker's job never moves."""
    stack = stack_factory(workers=2, fix="none", env=fast())
    job_id = submit(stack, sleep_s=2)
    victim = wait_running(stack, job_id, attempt=0)["worker"]  # stock RQ counts no attempts
    kill_worker(stack, victim)
    time.sleep(2 + 0.5 + 5)  # our bound (lease + sweep) plus 5 s of slack
    view = stack.job(job_id)
    assert view["status"] == "started" and view["worker"] == victim
    assert not stack.redis.exists(f"shap:worker:{stack.workers[1].name}")  # no fix in the survivor


def test_job_lost_between_dequeue_and_start_is_requeued(stack_factory):
    """A worker that died right after RQ moved the job to its intermediate list never started it."""
    stack = stack_factory(workers=0, env=fast())
    job_id = submit(stack)
    queue_key = f"rq:queue:{stack.config.queue}"
    # What RQ's dequeue does (BLMOVE to the intermediate list), by a worker that then dies.
    assert stack.redis.lmove(queue_key, f"{queue_key}:intermediate") == job_id
    eventually(lambda: job_id in stack.redis.lrange(queue_key, 0, -1), timeout=15, interval=0.1)
    assert stack.redis.lrange(queue_key, 0, -1) == [job_id]
    assert stack.redis.llen(f"{queue_key}:intermediate") == 0
    assert "lost between dequeue and start" in stack.job(job_id)["recovery"]
    stack.add_worker()
    view = stack.wait_terminal(job_id, timeout=30)
    assert (view["status"], view["attempts"]) == ("finished", 1)


def test_an_attempt_whose_worker_died_before_its_horse_marked_it_started_is_requeued(redis_only):
    """START ran, then the worker died (or froze) before the horse set RQ's status: RQ still says
    `queued`, yet the job is on no queue. Finalizing it as `queued` would leave it nowhere."""
    conn = Redis.from_url(redis_only.redis_url)
    tracker = Tracker(conn, "gap", liveness_ttl=2, max_attempts=3)
    past_the_restart_hold(tracker)
    job = tracker.enqueue("shap_service.jobs.analyze", kwargs={}, job_timeout=10, result_ttl=60)
    conn.lpop("rq:queue:gap")  # taken by a worker
    assert tracker.start(job.id, token="t", worker="ghost", pid=1) == 1
    conn.delete(live_key(job.id))  # its lease ran out
    report = tracker.sweep(by="test", connection_check=False)
    assert report.requeued == 1, report
    assert conn.lrange("rq:queue:gap", 0, -1) == [job.id.encode()]
    assert tracker.start(job.id, token="t2", worker="w2", pid=2) == 2


def test_the_dequeue_gap_costs_a_sweep_one_round_trip_per_queue(redis_only):
    """Jobs in RQ's intermediate list are noted, forgotten once gone, and requeued after a
    lease; a sweep surveys that list in one script (it was a command per job, and more)."""
    from rq import Queue

    from fixtures.round_trips import proxied_client

    conn = Redis.from_url(redis_only.redis_url)
    past_the_restart_hold(Tracker(conn, "gap2", liveness_ttl=1, max_attempts=3))
    with proxied_client(conn, name="limbo-rt") as via:
        tracker = Tracker(via.client, "gap2", liveness_ttl=1, max_attempts=3)
        tracked = tracker.enqueue("shap_service.jobs.analyze", kwargs={}, job_timeout=10, result_ttl=60)
        plain = Queue("gap2", connection=conn).enqueue("time.sleep", 0)  # enqueued without our API
        for _ in range(2):  # what RQ's dequeue does, by workers that then die
            conn.lmove("rq:queue:gap2", "rq:queue:gap2:intermediate")
        limbo = "shap:limbo:gap2"
        conn.hset(limbo, "long-gone", 1.0)  # a sighting of a job no longer in the list

        tracker.sweep(by="t", connection_check=False, dry_run=True)
        assert conn.hkeys(limbo) == [b"long-gone"]  # a dry run writes nothing

        tracker.sweep(by="t", connection_check=False)  # warm: scripts loaded, clock read
        conn.hdel(limbo, tracked.id, plain.id)
        sends = via.sends()
        report = tracker.sweep(by="t", connection_check=False)
        assert via.sends() - sends == 2  # the running set's suspects, then the gap
        assert report.requeued == 0 and set(conn.hkeys(limbo)) == {tracked.id.encode(), plain.id.encode()}

        time.sleep(1.1)
        report = tracker.sweep(by="t", connection_check=False)
        assert report.requeued == 2, report
        assert set(conn.lrange("rq:queue:gap2", 0, -1)) == {tracked.id.encode(), plain.id.encode()}
        assert conn.hget(track_key(plain.id), "state") == b"queued"  # tracked from here on
