"""Workers run only the job functions they were told to run.

A JSON job can name any importable function; anyone who can write to the queue could make
`shap-worker` run `os.system`. The service's worker runs only the service's own jobs; an app's
`rq worker -w RecoveringWorker` runs what JOB_ALLOWLIST names (import paths or `module.*`), and
RQ's behaviour, with one warning, when it is unset. Real Redis, real workers (burst), real jobs;
the evidence is a file the forbidden job would have written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from rq_recovery.allowlist import allowed_by, parse_allowlist
from rq_recovery.worker_process_fix import RecoveringWorker
from shap_service.config import Settings
from shap_service.worker import build_worker

pytestmark = pytest.mark.integration

ROW = [0.01] * 10


@pytest.fixture
def conn(redis_only):
    c = Redis.from_url(redis_only.redis_url)
    c.flushdb()
    yield c
    c.close()


def _reason(job: Job) -> str:
    result = job.latest_result()
    return (result.exc_string if result is not None else "") or ""


def test_allowlist_patterns():
    rules = parse_allowlist("shap_service.jobs.analyze, apps.*")
    assert rules == ("shap_service.jobs.analyze", "apps.*")
    assert allowed_by(rules, "shap_service.jobs.analyze") and allowed_by(rules, "apps.plain_rq_app.work")
    assert not allowed_by(rules, "shap_service.jobs.analyze_more") and not allowed_by(rules, "appsx.work")
    assert not allowed_by(rules, "os.system") and allowed_by(None, "os.system")  # None: no allowlist
    with pytest.raises(ValueError, match="JOB_ALLOWLIST"):
        parse_allowlist("os.*, bad entry")


def test_shap_worker_fails_a_job_naming_another_function_and_lives_on(conn, redis_only, tmp_path):
    evidence = tmp_path / "ran"
    settings = Settings(redis_url=redis_only.redis_url, queue_name="sw", liveness_ttl=2, heartbeat_interval=0.5)
    queue = Queue("sw", connection=conn, serializer=JSONSerializer)
    evil = queue.enqueue("os.system", f"touch {evidence}")
    good = queue.enqueue("shap_service.jobs.analyze", model_name="diabetes", rows=[ROW])
    build_worker(settings, name="allow-1").work(burst=True)
    assert not evidence.exists()  # never ran
    evil.refresh()
    assert evil.get_status() == "failed" and "not a job this worker runs: os.system" in _reason(evil)
    good.refresh()
    assert good.get_status() == "finished", _reason(good)  # the worker lived on


def test_rq_worker_runs_what_job_allowlist_names(conn, tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    evidence = tmp_path / "ran"
    witness = tmp_path / "w"
    witness.mkdir()
    queue = Queue("aw", connection=conn)
    evil = queue.enqueue("os.system", f"touch {evidence}")
    good = queue.enqueue("apps.plain_rq_app.work", 0, str(witness))
    monkeypatch.setenv("JOB_ALLOWLIST", "apps.plain_rq_app.*")
    RecoveringWorker([queue], connection=conn, name="allow-2").work(burst=True)
    evil.refresh()
    good.refresh()
    assert not evidence.exists() and evil.get_status() == "failed" and "JOB_ALLOWLIST" in _reason(evil)
    assert good.get_status() == "finished"


def test_without_job_allowlist_rq_worker_behaves_like_rq_and_warns_once(conn, tmp_path, monkeypatch, caplog):
    evidence = tmp_path / "ran"
    queue = Queue("nw", connection=conn)
    job = queue.enqueue("os.system", f"touch {evidence}")
    monkeypatch.delenv("JOB_ALLOWLIST", raising=False)
    with caplog.at_level("WARNING"):
        RecoveringWorker([queue], connection=conn, name="allow-3").work(burst=True)
    job.refresh()
    assert evidence.exists() and job.get_status() == "finished"  # RQ's behaviour
    warnings = [r for r in caplog.records if "JOB_ALLOWLIST" in r.getMessage()]
    assert len(warnings) == 1
