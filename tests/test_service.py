"""The service end to end: a real Redis, the `shap-api` process and one `shap-worker` process."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime

import numpy as np
import pytest
import requests
from sklearn.datasets import load_breast_cancer, load_diabetes

from harness.backends.local.stack import Stack
from harness.wait import eventually
from shap_service.model import MODELS

pytestmark = pytest.mark.integration


def _rows(loader, n: int) -> list[list[float]]:
    return np.asarray(loader().data[:n], dtype=float).tolist()


def _assert_additive(result: dict, n_rows: int, n_features: int) -> None:
    base = result["base_value"]
    values = result["shap_values"]
    predictions = result["predictions"]
    assert isinstance(base, float) and math.isfinite(base)
    assert len(values) == n_rows and all(len(row) == n_features for row in values)
    assert len(predictions) == n_rows
    for i, (row, pred) in enumerate(zip(values, predictions, strict=True)):
        assert all(math.isfinite(v) for v in row), i
        assert base + sum(row) == pytest.approx(pred, rel=1e-6, abs=1e-9), f"row {i} not additive"
    assert result["max_additivity_error"] < 1e-6


def _finished(stack: Stack, job_id: str, timeout: float = 60.0) -> dict:
    view = stack.wait_terminal(job_id, timeout=timeout)
    assert view["status"] == "finished", view
    return view


def test_diabetes_tree_analysis(service_stack: Stack) -> None:
    rows = _rows(load_diabetes, 5)
    job_id = service_stack.submit(rows)["job_id"]
    view = _finished(service_stack, job_id)
    result = view["result"]
    assert result["model"] == "diabetes"
    assert result["explainer"] == "tree"
    assert result["model_version"] == MODELS["diabetes"].config_hash
    assert result["feature_names"] == list(load_diabetes().feature_names)
    assert len(result["feature_names"]) == 10
    _assert_additive(result, 5, 10)
    predictions = result["predictions"]
    assert all(math.isfinite(p) for p in predictions)
    assert len(set(predictions)) == 5, predictions
    # Diabetes targets range 25..346; a fitted regressor predicts inside that range.
    assert all(25 <= p <= 346 for p in predictions), predictions
    mean_abs = result["mean_abs_shap"]
    assert list(mean_abs) == result["feature_names"]
    expected = np.abs(np.asarray(result["shap_values"])).mean(axis=0)
    assert [mean_abs[f] for f in result["feature_names"]] == pytest.approx(expected.tolist(), rel=1e-12)
    assert result["worker_pid"] == service_stack.workers[0].pid


def test_breast_cancer_tree_analysis(service_stack: Stack) -> None:
    rows = _rows(load_breast_cancer, 3)
    job_id = service_stack.submit(rows, model="breast_cancer")["job_id"]
    result = _finished(service_stack, job_id)["result"]
    assert result["model"] == "breast_cancer"
    assert result["feature_names"] == list(load_breast_cancer().feature_names)
    _assert_additive(result, 3, 30)
    # The first three training rows are malignant (target 0): log-odds of benign are negative.
    assert list(load_breast_cancer().target[:3]) == [0, 0, 0]
    assert all(p < 0 for p in result["predictions"]), result["predictions"]


def test_kernel_explainer_is_additive(service_stack: Stack) -> None:
    rows = _rows(load_diabetes, 2)
    job_id = service_stack.submit(rows, explainer="kernel", background_size=20, nsamples=200)["job_id"]
    result = _finished(service_stack, job_id, timeout=120)["result"]
    assert result["explainer"] == "kernel"
    _assert_additive(result, 2, 10)
    # Same model, same rows: the tree explainer's predictions are the kernel's too.
    tree = _finished(service_stack, service_stack.submit(rows)["job_id"])["result"]
    assert tree["predictions"] == pytest.approx(result["predictions"], rel=1e-12)


def _worker_info(stack: Stack) -> dict[str, str]:
    info = stack.redis.hgetall(f"shap:worker:{stack.workers[0].name}")
    assert info, f"no shap:worker hash for {stack.workers[0].name}"
    return info


def _wait_next_beat(stack: Stack, after: float, timeout: float = 10.0) -> dict[str, str]:
    def refreshed() -> dict[str, str] | None:
        info = _worker_info(stack)
        return info if float(info["beat_at"]) > after else None

    info = eventually(refreshed, timeout=timeout, interval=0.1)
    if info is None:
        raise TimeoutError(f"worker hash not refreshed within {timeout} s")
    return info


def _model_log_lines(stack: Stack) -> list[str]:
    """Every `model.load` that did work (trained or read the disk cache) logs one such line."""
    text = stack.workers[0].process.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if "shap_service.model" in line and " model " in line]


def test_model_not_retrained_per_job(service_stack: Stack) -> None:
    before = _worker_info(service_stack)
    before_log = _model_log_lines(service_stack)
    assert len(before_log) == len(MODELS), before_log
    before_stats = json.loads(before["model_stats"])
    assert int(before["pid"]) == service_stack.workers[0].pid
    loads = before_stats["trainings"] + before_stats["disk_loads"]
    # The worker loads every model once, before forking horses.
    assert loads == len(MODELS) == 2, before_stats
    diabetes = _rows(load_diabetes, 3)
    cancer = _rows(load_breast_cancer, 2)
    ids = [
        service_stack.submit(diabetes if i % 2 == 0 else cancer, model="diabetes" if i % 2 == 0 else "breast_cancer")[
            "job_id"
        ]
        for i in range(5)
    ]
    for job_id in ids:
        result = _finished(service_stack, job_id)["result"]
        assert result["worker_pid"] == service_stack.workers[0].pid
    done_at = time.time()
    after = _wait_next_beat(service_stack, done_at)
    assert int(after["pid"]) == service_stack.workers[0].pid
    assert json.loads(after["model_stats"]) == before_stats
    # The horses (forks) did not load either: no model line was logged during the jobs.
    assert _model_log_lines(service_stack) == before_log


def test_job_error_fails_without_retry(service_stack: Stack) -> None:
    job_id = service_stack.submit(chaos={"raise": "boom"})["job_id"]
    view = service_stack.wait_terminal(job_id)
    assert view["status"] == "failed", view
    assert "boom" in view["error"] and "RuntimeError" in view["error"]
    assert view["attempts"] == 1
    assert "result" not in view

    # The worker records its own bookkeeping just after RQ marks the job failed.
    def failed_track() -> dict[str, str] | None:
        track = service_stack.redis.hgetall(f"shap:track:{job_id}")
        return track if track["state"] == "failed" else None

    track = eventually(failed_track, timeout=10)
    assert track, service_stack.redis.hgetall(f"shap:track:{job_id}")
    assert track["attempt"] == "1"
    assert "requeues" not in track
    assert service_stack.redis.zscore("shap:active:shap-jobs", job_id) is None


def test_job_view_fields(service_stack: Stack) -> None:
    job_id = service_stack.submit()["job_id"]
    view = service_stack.wait_terminal(job_id)
    assert view["status"] == "finished", view
    assert {"duration_s", "queue_wait_s", "peak_rss_bytes"} <= set(view["facts"])  # written with the outcome
    for key in ("job_id", "status", "attempts", "enqueued_at", "started_at", "ended_at", "worker"):
        assert key in view, key
    assert view["job_id"] == job_id
    assert view["attempts"] == 1
    assert view["worker"] == service_stack.workers[0].name
    assert view["late_completions_rejected"] == 0
    enq, start, end = (datetime.fromisoformat(view[k]) for k in ("enqueued_at", "started_at", "ended_at"))
    assert enq.utcoffset() is not None and enq.utcoffset().total_seconds() == 0
    assert enq <= start <= end
    assert (end - enq).total_seconds() < 60
    legacy = requests.get(f"{service_stack.api_url}/job_status/{job_id}", timeout=10)
    assert legacy.status_code == 200 and legacy.json() == view


def test_redis_ping_503_when_redis_stopped(stack_factory) -> None:
    stack = stack_factory(workers=0)
    url = f"{stack.api_url}/admin/redis_ping"
    r = requests.get(url, headers=stack.admin_headers, timeout=10)
    assert r.status_code == 200 and r.json()["ok"] is True
    stack.redis_proc.stop()
    r = requests.get(url, headers=stack.admin_headers, timeout=10)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["ok"] is False
    assert "Redis unreachable" in body["error"]
    assert stack.admin_token not in r.text
    r = requests.post(f"{stack.api_url}/analyze", json={"rows": [[0.01] * 10]}, timeout=10)
    assert r.status_code == 503, r.text
    assert r.json()["error"].startswith("queue unavailable")
