"""The HTTP API in-process (FastAPI TestClient) against a real Redis server.

No worker runs here: a valid request leaves exactly one job in the RQ queue, an invalid one
leaves Redis exactly as it was.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from harness.backends.config import free_port
from harness.backends.local.stack import Stack
from shap_service import __version__
from shap_service.api import MAX_BODY_BYTES, MAX_ROWS, create_app
from shap_service.config import Settings

pytestmark = pytest.mark.integration

QUEUE = "shap-jobs"
QUEUE_KEY = f"rq:queue:{QUEUE}"
ACTIVE_KEY = f"shap:active:{QUEUE}"
ADMIN_TOKEN = "adm-" + uuid.uuid4().hex
API_KEY = "key-" + uuid.uuid4().hex
ROW = [0.01, -0.04, 0.06, 0.02, -0.03, 0.01, -0.02, 0.03, 0.04, -0.01]
JSON = {"content-type": "application/json"}


def _client(redis_url: str, **settings: object) -> Iterator[TestClient]:
    app = create_app(Settings(redis_url=redis_url, queue_name=QUEUE, api_sweeper=False, **settings))
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def client(redis_only: Stack) -> Iterator[TestClient]:
    yield from _client(redis_only.redis_url, admin_token=ADMIN_TOKEN)


@pytest.fixture(scope="module")
def keyed_client(redis_only: Stack) -> Iterator[TestClient]:
    yield from _client(redis_only.redis_url, admin_token=ADMIN_TOKEN, api_key=API_KEY)


@pytest.fixture(scope="module")
def no_admin_client(redis_only: Stack) -> Iterator[TestClient]:
    yield from _client(redis_only.redis_url)


@pytest.fixture(scope="module")
def unreachable_client() -> Iterator[TestClient]:
    # A port we just bound and released: nothing listens there.
    yield from _client(f"redis://127.0.0.1:{free_port()}/0", admin_token=ADMIN_TOKEN)


def _snapshot(redis: Redis) -> tuple[int, int, int]:
    return redis.llen(QUEUE_KEY), redis.zcard(ACTIVE_KEY), redis.dbsize()


def _error_of(resp) -> str:
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    assert body["error"], body
    return body["error"]


# -- health -----------------------------------------------------------------------------------


def test_ping(client: TestClient) -> None:
    r = client.get("/ping")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "version": __version__}


# -- analyze: the happy path ------------------------------------------------------------------


def test_analyze_valid_enqueues_exactly_one_job(client: TestClient, redis: Redis) -> None:
    qlen, active, _ = _snapshot(redis)
    r = client.post("/analyze", json={"model": "diabetes", "rows": [ROW, ROW]})
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"job_id", "status", "status_url"}
    job_id = body["job_id"]
    assert str(uuid.UUID(job_id)) == job_id
    assert body["status"] == "queued"
    assert body["status_url"] == f"http://testserver/jobs/{job_id}"
    assert redis.llen(QUEUE_KEY) == qlen + 1
    assert redis.lindex(QUEUE_KEY, -1) == job_id
    assert redis.zcard(ACTIVE_KEY) == active + 1
    assert redis.zscore(ACTIVE_KEY, job_id) is not None
    track = redis.hgetall(f"shap:track:{job_id}")
    assert track["state"] == "queued" and track["attempt"] == "0" and track["queue"] == QUEUE


def test_analyze_job_carries_the_request(client: TestClient, raw_redis: Redis) -> None:
    r = client.post(
        "/analyze",
        json={"model": "breast_cancer", "rows": [[1] * 30], "explainer": "kernel", "background_size": 7},
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    view = client.get(f"/jobs/{job_id}").json()
    assert view["job_id"] == job_id
    assert view["status"] == "queued"
    assert view["attempts"] == 0
    assert view["worker"] is None
    assert view["started_at"] is None and view["ended_at"] is None
    assert view["enqueued_at"] is not None
    # The enqueued kwargs are what the worker will run (ints are accepted as floats).
    job = Job.fetch(job_id, connection=raw_redis, serializer=JSONSerializer)
    assert job.func_name == "shap_service.jobs.analyze"
    assert job.kwargs == {
        "model_name": "breast_cancer",
        "rows": [[1.0] * 30],
        "explainer": "kernel",
        "background_size": 7,
        "nsamples": 200,
        "chaos": None,
    }


# -- analyze: every bad input is a 4xx JSON error and enqueues nothing --------------------------


def _raw(text: str) -> dict:
    return {"content": text.encode(), "headers": JSON}


NINE = ",".join(["1"] * 9)

BAD_INPUTS = [
    # id, request kwargs, status, substrings the error must contain
    ("malformed-json", _raw('{"rows": [[1,2'), 400, ["not valid JSON"]),
    ("body-is-a-list", {"json": [ROW]}, 422, ["body", "dictionary or object"]),
    ("body-is-a-string", {"json": "rows"}, 422, ["body", "dictionary or object"]),
    ("zero-rows", {"json": {"rows": []}}, 422, ["rows", "at least 1"]),
    ("too-many-rows", {"json": {"rows": [ROW] * (MAX_ROWS + 1)}}, 422, ["rows", "at most 1000", "1001"]),
    ("missing-rows", {"json": {"model": "diabetes"}}, 422, ["rows", "required"]),
    ("wrong-feature-count", {"json": {"rows": [ROW, ROW[:9]]}}, 422, ["rows[1]", "9 values", "expects 10"]),
    ("empty-row", {"json": {"rows": [ROW, ROW, []]}}, 422, ["rows[2]", "at least 1"]),
    ("string-in-row", {"json": {"rows": [ROW[:3] + ["0.5"] + ROW[4:]]}}, 422, ["rows[0][3]", "valid number"]),
    ("bool-in-row", {"json": {"rows": [ROW, ROW[:9] + [True]]}}, 422, ["rows[1][9]", "valid number"]),
    ("null-in-row", {"json": {"rows": [[None] + ROW[1:]]}}, 422, ["rows[0][0]", "valid number"]),
    ("nan", _raw(f'{{"rows": [[NaN,{NINE}]]}}'), 422, ["rows[0][0]", "finite"]),
    ("infinity", _raw(f'{{"rows": [[{NINE},Infinity]]}}'), 422, ["rows[0][9]", "finite"]),
    ("minus-infinity", _raw(f'{{"rows": [[{NINE},-Infinity]]}}'), 422, ["rows[0][9]", "finite"]),
    ("1e400", _raw(f'{{"rows": [[1e400,{NINE}]]}}'), 422, ["rows[0][0]", "finite"]),
    ("nested-too-deep", {"json": {"rows": [[ROW]]}}, 422, ["rows[0][0]", "valid number"]),
    ("rows-not-a-list", {"json": {"rows": 5}}, 422, ["rows", "valid list"]),
    ("unknown-model", {"json": {"model": "iris", "rows": [ROW]}}, 422, ["model", "diabetes", "breast_cancer"]),
    ("unknown-explainer", {"json": {"explainer": "deep", "rows": [ROW]}}, 422, ["explainer", "tree", "kernel"]),
    ("unknown-field", {"json": {"rows": [ROW], "rowz": [ROW]}}, 422, ["rowz", "Extra inputs"]),
    ("chaos-when-disabled", {"json": {"rows": [ROW], "chaos": {"raise": "x"}}}, 422, ["chaos", "CHAOS_HOOKS"]),
    (
        "background-size-0",
        {"json": {"rows": [ROW], "background_size": 0}},
        422,
        ["background_size", "greater than or equal to 1"],
    ),
    (
        "background-size-101",
        {"json": {"rows": [ROW], "background_size": 101}},
        422,
        ["background_size", "less than or equal to 100"],
    ),
    ("background-size-str", {"json": {"rows": [ROW], "background_size": "5"}}, 422, ["background_size"]),
    ("nsamples-9", {"json": {"rows": [ROW], "nsamples": 9}}, 422, ["nsamples", "greater than or equal to 10"]),
]


@pytest.mark.parametrize("kwargs, status, needles", [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS])
def test_analyze_rejects_bad_input_and_enqueues_nothing(
    client: TestClient, redis: Redis, kwargs: dict, status: int, needles: list[str]
) -> None:
    before = _snapshot(redis)
    r = client.post("/analyze", **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    message = _error_of(r)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert _snapshot(redis) == before


def _padded(size: int) -> bytes:
    """A valid request padded with JSON whitespace to exactly `size` bytes."""
    core = json.dumps({"rows": [ROW]}).encode()
    return core[:-1] + b" " * (size - len(core)) + b"}"


def _chunks(data: bytes, n: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), n):
        yield data[i : i + n]


def test_body_over_limit_with_content_length_is_413(client: TestClient, redis: Redis) -> None:
    before = _snapshot(redis)
    body = _padded(MAX_BODY_BYTES + 1)
    r = client.post("/analyze", content=body, headers=JSON)
    assert r.status_code == 413, r.text
    message = _error_of(r)
    assert str(MAX_BODY_BYTES + 1) in message and str(MAX_BODY_BYTES) in message
    assert _snapshot(redis) == before


def test_body_over_limit_chunked_is_413(client: TestClient, redis: Redis) -> None:
    before = _snapshot(redis)
    r = client.post("/analyze", content=_chunks(_padded(MAX_BODY_BYTES + 1)), headers=JSON)
    assert r.status_code == 413, r.text
    assert str(MAX_BODY_BYTES) in _error_of(r)
    assert _snapshot(redis) == before


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_at_limit_is_accepted(client: TestClient, redis: Redis, chunked: bool) -> None:
    qlen = redis.llen(QUEUE_KEY)
    body = _padded(MAX_BODY_BYTES)
    assert len(body) == MAX_BODY_BYTES
    r = client.post("/analyze", content=_chunks(body) if chunked else body, headers=JSON)
    assert r.status_code == 202, r.text
    assert redis.llen(QUEUE_KEY) == qlen + 1


def test_non_numeric_content_length_is_400(client: TestClient, redis: Redis) -> None:
    before = _snapshot(redis)
    r = client.post("/analyze", content=json.dumps({"rows": [ROW]}).encode(), headers={**JSON, "content-length": "x"})
    assert r.status_code == 400
    assert "Content-Length" in _error_of(r)
    assert _snapshot(redis) == before


# -- API key ------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}], ids=["none", "wrong", "empty"])
def test_api_key_required(keyed_client: TestClient, redis: Redis, headers: dict) -> None:
    before = _snapshot(redis)
    r = keyed_client.post("/analyze", json={"rows": [ROW]}, headers=headers)
    assert r.status_code == 401
    assert "X-API-Key" in _error_of(r)
    assert _snapshot(redis) == before


def test_api_key_right(keyed_client: TestClient, redis: Redis) -> None:
    qlen = redis.llen(QUEUE_KEY)
    r = keyed_client.post("/analyze", json={"rows": [ROW]}, headers={"X-API-Key": API_KEY})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    assert redis.llen(QUEUE_KEY) == qlen + 1


def test_no_api_key_configured_means_open(client: TestClient) -> None:
    assert client.post("/analyze", json={"rows": [ROW]}, headers={"X-API-Key": "anything"}).status_code == 202


# -- admin --------------------------------------------------------------------------------------

ADMIN_ROUTES = [("GET", "/admin/redis_ping"), ("POST", "/admin/cleanup_jobs")]


@pytest.mark.parametrize("method, path", ADMIN_ROUTES)
def test_admin_disabled_without_token(no_admin_client: TestClient, method: str, path: str) -> None:
    r = no_admin_client.request(method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 403
    assert "ADMIN_TOKEN" in _error_of(r)
    r = no_admin_client.request(method, path)
    assert r.status_code == 403


@pytest.mark.parametrize("method, path", ADMIN_ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Basic x", f"Basic {ADMIN_TOKEN}", ADMIN_TOKEN, "Bearer ", f"Bearer {ADMIN_TOKEN}x"],
    ids=["none", "wrong", "basic-x", "basic-token", "bare-token", "empty-bearer", "token-prefix"],
)
def test_admin_rejects_bad_credentials(
    client: TestClient, redis: Redis, method: str, path: str, authorization: str | None
) -> None:
    before = _snapshot(redis)
    headers = {} if authorization is None else {"Authorization": authorization}
    r = client.request(method, path, headers=headers)
    assert r.status_code == 401, r.text
    assert _error_of(r) == "missing or wrong bearer token"
    assert r.headers["www-authenticate"] == "Bearer"
    assert _snapshot(redis) == before


def test_admin_redis_ping(client: TestClient) -> None:
    r = client.get("/admin/redis_ping", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"ok", "latency_ms"}
    assert body["ok"] is True
    assert isinstance(body["latency_ms"], float)
    assert 0 <= body["latency_ms"] < 2000


def test_admin_cleanup_jobs(client: TestClient, redis: Redis) -> None:
    assert client.post("/analyze", json={"rows": [ROW]}).status_code == 202
    active = redis.zcard(ACTIVE_KEY)
    qlen = redis.llen(QUEUE_KEY)
    r = client.post("/admin/cleanup_jobs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"scanned", "requeued", "failed", "skipped_live"}
    assert all(type(v) is int for v in body.values()), body
    # Nothing runs here: every active job is queued, and a sweep only scans started attempts.
    assert body == {"scanned": 0, "requeued": 0, "failed": 0, "skipped_live": 0}
    assert active >= 1
    assert redis.llen(QUEUE_KEY) == qlen and redis.zcard(ACTIVE_KEY) == active


def test_tokens_never_logged(client: TestClient, keyed_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    caplog.set_level(logging.DEBUG)
    assert client.get("/admin/redis_ping", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    assert client.get("/admin/redis_ping", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    assert client.post("/admin/cleanup_jobs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    assert keyed_client.post("/analyze", json={"rows": [ROW]}, headers={"X-API-Key": wrong}).status_code == 401
    assert keyed_client.post("/analyze", json={"rows": [ROW]}, headers={"X-API-Key": API_KEY}).status_code == 202
    # The capture works (the enqueue is logged), so an absent token means it was not logged.
    assert "job_enqueued" in caplog.text
    for secret in (ADMIN_TOKEN, API_KEY, wrong):
        assert secret not in caplog.text


# -- job status ---------------------------------------------------------------------------------


def test_unknown_job_is_404(client: TestClient) -> None:
    job_id = str(uuid.uuid4())
    for path in (f"/jobs/{job_id}", f"/job_status/{job_id}"):
        r = client.get(path)
        assert r.status_code == 404
        assert _error_of(r) == f"no job {job_id}"


@pytest.mark.parametrize("job_id", ["bad..id", "a" * 200, "a" * 129, "job$1", "x%20y"])
def test_malformed_job_id_is_400(client: TestClient, job_id: str) -> None:
    for prefix in ("/jobs/", "/job_status/"):
        r = client.get(prefix + job_id)
        assert r.status_code == 400, (prefix, job_id, r.text)
        assert "job id" in _error_of(r)


def test_job_id_of_128_chars_is_well_formed(client: TestClient) -> None:
    r = client.get("/jobs/" + "a" * 128)
    assert r.status_code == 404


def test_job_status_alias_same_body(client: TestClient) -> None:
    job_id = client.post("/analyze", json={"rows": [ROW]}).json()["job_id"]
    a = client.get(f"/jobs/{job_id}")
    b = client.get(f"/job_status/{job_id}")
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json()
    assert a.json()["job_id"] == job_id and a.json()["status"] == "queued"


# -- Redis unreachable ----------------------------------------------------------------------------


def test_redis_ping_503_when_unreachable(unreachable_client: TestClient) -> None:
    r = unreachable_client.get("/admin/redis_ping", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["ok"] is False
    assert "Redis unreachable" in body["error"] and "ConnectionError" in body["error"]


def test_analyze_and_status_503_when_unreachable(unreachable_client: TestClient) -> None:
    r = unreachable_client.post("/analyze", json={"rows": [ROW]})
    assert r.status_code == 503, r.text
    assert _error_of(r).startswith("queue unavailable")
    r = unreachable_client.get(f"/jobs/{uuid.uuid4()}")
    assert r.status_code == 503, r.text
    assert _error_of(r).startswith("queue unavailable")
    # Validation still comes first: a bad request is a 4xx even with Redis down.
    assert unreachable_client.post("/analyze", json={"rows": []}).status_code == 422
    assert unreachable_client.get("/ping").status_code == 200


# -- OpenAPI ------------------------------------------------------------------------------------


def test_openapi_describes_analyze(client: TestClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    op = spec["paths"]["/analyze"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert op["requestBody"]["required"] is True
    ref = schema["$ref"]
    assert ref == "#/components/schemas/AnalyzeRequest"
    model = spec["components"]["schemas"]["AnalyzeRequest"]
    assert model["required"] == ["rows"]
    assert model["additionalProperties"] is False
    assert set(model["properties"]) == {"model", "rows", "explainer", "background_size", "nsamples", "chaos"}
    rows = model["properties"]["rows"]
    assert rows["type"] == "array" and rows["minItems"] == 1 and rows["maxItems"] == MAX_ROWS
    assert model["properties"]["model"]["enum"] == ["diabetes", "breast_cancer"]
    assert "202" in op["responses"]
    for path in ("/jobs/{job_id}", "/job_status/{job_id}", "/ping", "/admin/redis_ping", "/admin/cleanup_jobs"):
        assert path in spec["paths"]


def test_finite_check_is_not_fooled_by_large_finite_values(client: TestClient) -> None:
    big = [1.7e308] + ROW[1:]
    assert math.isfinite(big[0])
    assert client.post("/analyze", json={"rows": [big]}).status_code == 202


def test_the_same_idempotency_key_gives_the_same_job_once(client: TestClient, redis: Redis) -> None:
    key = "order-" + uuid.uuid4().hex
    before = redis.llen(QUEUE_KEY)
    first = client.post("/analyze", json={"rows": [ROW]}, headers={"Idempotency-Key": key})
    again = client.post("/analyze", json={"rows": [ROW]}, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert first.json()["job_id"] == again.json()["job_id"]
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert redis.llen(QUEUE_KEY) == before + 1  # one job, pushed once
    other = client.post("/analyze", json={"rows": [ROW]}, headers={"Idempotency-Key": key + "-2"})
    assert other.json()["job_id"] != first.json()["job_id"]


def test_an_idempotency_key_reused_for_another_request_is_refused(client: TestClient, redis: Redis) -> None:
    key = "order-" + uuid.uuid4().hex
    assert client.post("/analyze", json={"rows": [ROW]}, headers={"Idempotency-Key": key}).status_code == 202
    before = redis.llen(QUEUE_KEY)
    r = client.post("/analyze", json={"rows": [ROW, ROW]}, headers={"Idempotency-Key": key})
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["error"]
    assert redis.llen(QUEUE_KEY) == before


@pytest.mark.parametrize("key", ["", "a" * 201, "bad key", "a/b"])
def test_a_malformed_idempotency_key_is_a_400(client: TestClient, redis: Redis, key: str) -> None:
    before = redis.llen(QUEUE_KEY)
    r = client.post("/analyze", json={"rows": [ROW]}, headers={"Idempotency-Key": key})
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"], r.text
    assert redis.llen(QUEUE_KEY) == before
