"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis v4, in-process ASGI) on a real Redis.

Every request, generated or hand-written, goes through `_exchange`, which checks the properties
the API promises whatever it is sent:

* the answer is a 2xx or a 4xx, never a 5xx (an exception escaping the app is a 500 too);
* the body is JSON (errors as `{"error": "<non-empty text>"}`), except a 200 from /metrics;
* the RQ queue (`LLEN rq:queue:shap-jobs`, no worker runs) grows by exactly 1 on a 202 from
  /analyze and by 0 on anything else, and a 202 only ever answers a request that is valid by an
  independent oracle (`_valid_analyze_body`), whose job carries exactly that request.

Sources of requests: schemathesis in positive and negative mode per operation
(`test_schema_fuzz`), a hand-written list of hostile requests (`test_explicit_case`: malformed
JSON, wrong types, huge numbers, NaN/Infinity, deep nesting, 10 MB bodies, unknown fields, bad
job ids, bad credentials), and two Hypothesis strategies (`test_valid_bodies_enqueue_once`,
`test_junk_requests`). `test_totals` checks that >= 1,000 requests reached every endpoint.
All generation is derandomized: CI runs the same requests every time.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import Message
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi

from harness.backends.local.stack import Stack
from shap_service.api import MAX_BODY_BYTES, MAX_ROWS, create_app
from shap_service.config import Settings
from shap_service.model import MODELS

pytestmark = pytest.mark.integration

QUEUE = "shap-jobs"
QUEUE_KEY = f"rq:queue:{QUEUE}"
ADMIN_TOKEN = "adm-" + uuid.uuid4().hex
API_KEY = "key-" + uuid.uuid4().hex
BEARER = f"Bearer {ADMIN_TOKEN}"
ROW = [0.01, -0.04, 0.06, 0.02, -0.03, 0.01, -0.02, 0.03, 0.04, -0.01]
JSON_CT = "application/json"
TEN_MB = 10 * 1024 * 1024
MIN_REQUESTS = 1000

PING, ANALYZE, JOBS, JOB_STATUS, REDIS_PING, CLEANUP, METRICS = OPERATIONS = (
    "GET /ping",
    "POST /analyze",
    "GET /jobs/{job_id}",
    "GET /job_status/{job_id}",
    "GET /admin/redis_ping",
    "POST /admin/cleanup_jobs",
    "GET /metrics",
)
ADMIN_OPS = (REDIS_PING, CLEANUP)
JOB_OPS = (JOBS, JOB_STATUS)
ANALYZE_FIELDS = {"model", "rows", "explainer", "background_size", "nsamples", "chaos"}

#: (operation, mode, max_examples). /ping and /metrics take no input, so the schema leaves
#: nothing for negative mode to violate (schemathesis raises Unsatisfiable): their hostile
#: requests come from the explicit and junk cases below.
FUZZ_PLAN = [
    (ANALYZE, GenerationMode.POSITIVE, 300),
    (ANALYZE, GenerationMode.NEGATIVE, 300),
    (JOBS, GenerationMode.POSITIVE, 80),
    (JOBS, GenerationMode.NEGATIVE, 80),
    (JOB_STATUS, GenerationMode.POSITIVE, 80),
    (JOB_STATUS, GenerationMode.NEGATIVE, 80),
    (REDIS_PING, GenerationMode.POSITIVE, 80),
    (REDIS_PING, GenerationMode.NEGATIVE, 40),
    (CLEANUP, GenerationMode.POSITIVE, 80),
    (CLEANUP, GenerationMode.NEGATIVE, 40),
    (PING, GenerationMode.POSITIVE, 20),
    (METRICS, GenerationMode.POSITIVE, 20),
]

#: Requests sent, by (operation, source) and by (operation, status); read by test_totals.
SENT: Counter[tuple[str, str]] = Counter()
STATUSES: Counter[tuple[str, int]] = Counter()
DONE: set[str] = set()
JOB_IDS: list[str] = []

HYPOTHESIS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
}


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(redis_only: Stack):
    app = create_app(
        Settings(
            redis_url=redis_only.redis_url,
            queue_name=QUEUE,
            admin_token=ADMIN_TOKEN,
            api_key=API_KEY,
            api_sweeper=False,
            chaos_hooks=False,
        )
    )
    # The service enforces these formats but does not document them, which leaves negative mode
    # nothing to violate. Declare them in this test app's copy of its schema (the product's is
    # untouched): job ids as `_JOB_ID` in api.py, and the bearer scheme of the admin header.
    spec = copy.deepcopy(app.openapi())
    for path, item in spec["paths"].items():
        for param in item.get("get", item.get("post", {})).get("parameters", []):
            if param["name"] == "job_id":
                param["schema"] = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"}
            elif param["name"] == "authorization" and path.startswith("/admin/"):
                param["schema"] = {"type": "string", "pattern": "^Bearer [!-~]{1,64}$"}
    app.openapi_schema = spec
    return app


@pytest.fixture(scope="module")
def schema(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return schema


@pytest.fixture(scope="module")
def client(app) -> Iterator[Any]:
    """A requests.Session into the app in-process: the transport case.call() uses, so headers go
    over as latin-1 octets (as on the wire) and a generator body is sent chunked."""
    with asgi.get_client(app) as session:
        yield session


@pytest.fixture(scope="module")
def real_job(client, redis: Redis, raw_redis: Redis) -> str:
    """One queued job, so that the status endpoints also answer 200 under fuzzing."""
    body = json.dumps({"rows": [ROW]}).encode()
    status, data = _exchange(
        redis,
        raw_redis,
        ANALYZE,
        "setup",
        lambda: client.post("/analyze", data=body, headers={"content-type": JSON_CT, "x-api-key": API_KEY}),
    )
    assert status == 202, data
    return data["job_id"]


# -- the properties ---------------------------------------------------------------------------


def _valid_analyze_body(raw: bytes | None, content_type: str | None) -> dict[str, Any] | None:
    """The request as the job must carry it, if `raw` is a valid /analyze body; else None.

    Independent of pydantic: what the API documents, written out by hand.
    """
    if content_type:
        msg = Message()
        msg["content-type"] = content_type
        sub = msg.get_content_subtype()
        if msg.get_content_maintype() != "application" or not (sub == "json" or sub.endswith("+json")):
            return None
    try:
        body = json.loads(raw or b"")
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or "rows" not in body or not set(body) <= ANALYZE_FIELDS:
        return None
    model, explainer = body.get("model", "diabetes"), body.get("explainer", "tree")
    background_size, nsamples = body.get("background_size", 50), body.get("nsamples", 200)
    if type(model) is not str or model not in MODELS or explainer not in ("tree", "kernel"):
        return None
    if type(background_size) is not int or not 1 <= background_size <= 100:
        return None
    if type(nsamples) is not int or not 10 <= nsamples <= 5000:
        return None
    if body.get("chaos") is not None:  # CHAOS_HOOKS is off
        return None
    rows = body["rows"]
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
        return None
    floats = []
    for row in rows:
        if not isinstance(row, list) or len(row) != MODELS[model].n_features:
            return None
        if any(type(v) not in (int, float) for v in row):
            return None
        try:
            converted = [float(v) for v in row]
        except OverflowError:
            return None
        if not all(math.isfinite(v) for v in converted):
            return None
        floats.append(converted)
    return {
        "model_name": model,
        "rows": floats,
        "explainer": explainer,
        "background_size": background_size,
        "nsamples": nsamples,
        "chaos": None,
    }


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name)
    if isinstance(value, list):  # schemathesis' Response: lowercase keys, list values
        value = value[0] if value else None
    return value


def _describe(request: Any) -> str:
    body = request.body
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes):
        shown = repr(body[:300]) + (f"... ({len(body)} bytes)" if len(body) > 300 else "")
    else:
        shown = f"<{type(body).__name__}>"  # None, or a generator sent chunked
    return f"{request.method} {request.url}\n  headers: {dict(request.headers)}\n  body: {shown}"


def _exchange(
    redis: Redis,
    raw_redis: Redis,
    op: str,
    source: str,
    send: Callable[[], Any],
    *,
    sent_body: bytes | None = None,
) -> tuple[int, Any]:
    """Send one request and check the universal properties; returns (status, parsed body).

    `send` returns a requests.Response or a schemathesis Response (both carry `.request`).
    `sent_body` overrides the body the oracle sees (a generator body cannot be re-read).
    """
    before = redis.llen(QUEUE_KEY)
    SENT[(op, source)] += 1
    try:
        response = send()
    except Exception as exc:  # the app raised: a real server answers 500 here
        STATUSES[(op, 500)] += 1
        raise AssertionError(f"{op}: the app raised {type(exc).__name__}: {exc} (the client gets a 500)") from exc
    grew = redis.llen(QUEUE_KEY) - before
    status = response.status_code
    STATUSES[(op, status)] += 1
    request = response.request
    where = f"{op} [{source}] answered {status}\n{_describe(request)}\n  response: {response.content[:500]!r}"
    assert 200 <= status < 500, f"5xx or unexpected status: {where}"

    content_type = _header(response.headers, "content-type") or ""
    if op == METRICS and status == 200:
        assert content_type.startswith("text/plain"), where
        data: Any = response.content.decode()
        assert f'shap_queue_jobs{{queue="{QUEUE}",registry="queued"}}' in data, where
    else:
        assert content_type.split(";")[0].strip() == JSON_CT, f"not JSON: {where}"
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            raise AssertionError(f"body is not JSON: {where}") from exc
        if status >= 400:
            assert isinstance(data, dict), where
            assert isinstance(data.get("error"), str) and data["error"], f"no 'error' text: {where}"

    if op == ANALYZE and status == 202:
        assert grew == 1, f"a 202 enqueued {grew} jobs: {where}"
        body = sent_body if sent_body is not None else request.body
        body = body.encode() if isinstance(body, str) else body
        expected = _valid_analyze_body(body, _header(request.headers, "content-type"))
        assert expected is not None, f"an invalid request was accepted and enqueued: {where}"
        assert _header(request.headers, "x-api-key") == API_KEY, f"enqueued without the API key: {where}"
        job_id = data["job_id"]
        assert data["status"] == "queued" and redis.lindex(QUEUE_KEY, -1) == job_id, where
        job = Job.fetch(job_id, connection=raw_redis, serializer=JSONSerializer)
        assert job.kwargs == expected, f"the job does not carry the request: {job.kwargs} != {expected}\n{where}"
        JOB_IDS.append(job_id)
    else:
        assert grew == 0, f"the queue grew by {grew} without a 202 from /analyze: {where}"
    return status, data


# -- 1. schemathesis, positive and negative, per operation ------------------------------------


@pytest.mark.parametrize("op, mode, max_examples", [pytest.param(*p, id=f"{p[0]}-{p[1].value}") for p in FUZZ_PLAN])
def test_schema_fuzz(
    schema, redis: Redis, raw_redis: Redis, real_job: str, op: str, mode: GenerationMode, max_examples: int
) -> None:
    method, path = op.split(" ")
    operation = schema[path][method]
    source = f"schemathesis-{mode.value}"

    @settings(max_examples=max_examples, **HYPOTHESIS)
    @given(case=operation.as_strategy(generation_mode=mode), creds=st.booleans(), pick=st.integers(0, 10**6))
    def fuzz(case, creds: bool, pick: int) -> None:
        headers = dict(case.headers or {})
        # Credentials: positive mode sends the right ones for about half the cases; negative
        # /analyze always does, so that its malformed bodies reach validation, not just the 401.
        with_key = op == ANALYZE and (creds or mode.is_negative)
        with_token = op in ADMIN_OPS and creds and mode.is_positive
        if with_key:
            headers["x-api-key"] = API_KEY
        if with_token:
            headers["authorization"] = BEARER
        case.headers = headers
        real = None
        if op in JOB_OPS and mode.is_positive and creds:
            real = JOB_IDS[pick % len(JOB_IDS)] if JOB_IDS else real_job
            case.path_parameters = {"job_id": real}
        note(case.as_curl_command())

        status, data = _exchange(redis, raw_redis, op, source, case.call)

        if op in ADMIN_OPS:
            assert status == (200 if with_token else 401), (status, data)
        elif op == ANALYZE and not with_key:
            assert status in (400, 401, 413), (status, data)  # unparsable bodies fail before auth
        elif op in JOB_OPS:
            if real:
                assert status == 200 and data["job_id"] == real, (status, data)
            else:
                assert status in (400, 404), (status, data)
        elif op in (PING, METRICS):
            assert status == 200, (status, data)

    fuzz()
    DONE.add(f"{op}-{mode.value}")


# -- 2. explicit hostile requests -------------------------------------------------------------

NINE = ",".join(["1"] * 9)


def _deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _rows(*values: str) -> bytes:
    """A diabetes body with `values` as the first cells of its one row, padded to 10."""
    cells = list(values) + ["1"] * (10 - len(values))
    return f'{{"rows": [[{",".join(cells)}]]}}'.encode()


def _big_chunks() -> Iterator[bytes]:
    chunk = b" " * (64 * 1024)
    yield b'{"rows": [[' + NINE.encode() + b",1]]"
    for _ in range(TEN_MB // len(chunk)):
        yield chunk
    yield b"}"


# (id, operation, method, path, request kwargs (values may be callables), expected statuses)
EXPLICIT: list[tuple[str, str, str, str, dict[str, Any], set[int]]] = []


def _analyze(case_id: str, body: Any, expect: set[int] | int, content_type: str | None = JSON_CT, **headers) -> None:
    hdrs = {"x-api-key": API_KEY, **({"content-type": content_type} if content_type else {}), **headers}
    hdrs = {k: v for k, v in hdrs.items() if v is not None}
    EXPLICIT.append((case_id, ANALYZE, "POST", "/analyze", {"data": body, "headers": hdrs}, _set(expect)))


def _set(expect: set[int] | int) -> set[int]:
    return expect if isinstance(expect, set) else {expect}


# malformed JSON and encodings
_analyze("malformed-json", b'{"rows": [[1,2', 400)
_analyze("trailing-garbage", _rows() + b" x", 400)
_analyze("two-documents", _rows() + _rows(), 400)
_analyze("single-quotes", b"{'rows': [[1]]}", 400)
_analyze("not-utf8", b'\xff\xfe{"rows"', 400)
_analyze("nul-byte", b"\x00", 400)
_analyze("empty-body", b"", {400, 422})
_analyze("whitespace-body", b"   ", 400)
_analyze("json-null", b"null", 422)
_analyze("json-number-body", b"1e999", 422)
_analyze("utf16-body", json.dumps({"rows": [ROW]}).encode("utf-16"), {202, 400})
_analyze("utf8-bom", b"\xef\xbb\xbf" + _rows(), {202, 400})
_analyze("duplicate-keys-last-wins", b'{"rows": [], "rows": [[' + NINE.encode() + b",1]]}", 202)
# wrong types
_analyze("body-list", _json([ROW]), 422)
_analyze("body-string", _json("rows"), 422)
_analyze("rows-string", _json({"rows": "1,2,3"}), 422)
_analyze("rows-object", _json({"rows": {"0": ROW}}), 422)
_analyze("rows-of-strings", _json({"rows": [[str(v) for v in ROW]]}), 422)
_analyze("rows-of-bools", _json({"rows": [[True] * 10]}), 422)
_analyze("rows-of-nulls", _json({"rows": [[None] * 10]}), 422)
_analyze("rows-of-objects", _json({"rows": [[{}] * 10]}), 422)
_analyze("model-int", _json({"rows": [ROW], "model": 1}), 422)
_analyze("model-null", _json({"rows": [ROW], "model": None}), 422)
_analyze("model-case", _json({"rows": [ROW], "model": "DIABETES"}), 422)
_analyze("explainer-list", _json({"rows": [ROW], "explainer": ["tree"]}), 422)
_analyze("background-size-str", _json({"rows": [ROW], "background_size": "5"}), 422)
_analyze("background-size-float", _json({"rows": [ROW], "background_size": 5.0}), 422)
_analyze("background-size-bool", _json({"rows": [ROW], "background_size": True}), 422)
_analyze("nsamples-negative", _json({"rows": [ROW], "nsamples": -1}), 422)
_analyze("chaos-disabled", _json({"rows": [ROW], "chaos": {"raise": "x"}}), 422)
_analyze("chaos-not-object", _json({"rows": [ROW], "chaos": "hang"}), 422)
_analyze("chaos-null-is-no-chaos", _json({"rows": [ROW], "chaos": None}), 202)
_analyze("breast-cancer-rows-for-diabetes", _json({"rows": [[1] * 30]}), 422)
_analyze("too-many-rows", _json({"rows": [ROW] * (MAX_ROWS + 1)}), 422)
_analyze("row-too-long", _json({"rows": [[1] * 101]}), 422)
# huge numbers and NaN / Infinity
_analyze("max-float", _rows("1.7976931348623157e308", "-1.7976931348623157e308"), 202)
_analyze("subnormal", _rows("5e-324", "-0.0"), 202)
_analyze("big-exact-int", _rows("123456789012345678901234567890"), 202)
_analyze("1e309-is-inf", _rows("1e309"), 422)
_analyze("minus-1e309", _rows("-1e309"), 422)
_analyze("int-400-digits", _rows("9" * 400), 422)
_analyze("int-5000-digits", _rows("9" * 5000), {400, 422})
_analyze("background-size-huge", _json({"rows": [ROW], "background_size": 10**400}), 422)
_analyze("nsamples-huge-negative", _json({"rows": [ROW], "nsamples": -(10**400)}), 422)
_analyze("nan", _rows("NaN"), 422)
_analyze("infinity", _rows("Infinity"), 422)
_analyze("minus-infinity", _rows("-Infinity"), 422)
_analyze("nan-string", _json({"rows": [["NaN"] + ROW[1:]]}), 422)
_analyze("nan-as-background-size", b'{"rows": [[' + NINE.encode() + b',1]], "background_size": NaN}', 422)
# deep nesting
_analyze("deep-rows-100k", b'{"rows": ' + _deep(100_000).encode() + b"}", {400, 422})
_analyze("deep-rows-5k", b'{"rows": ' + _deep(5_000).encode() + b"}", {400, 422})
_analyze("deep-body-array-300k", _deep(300_000).encode(), {400, 422})
_analyze("deep-object-50k", (b'{"a":' * 50_000) + b"1" + b"}" * 50_000, {400, 422})
_analyze("deep-in-unknown-field", b'{"rows": [[' + NINE.encode() + b',1]], "x": ' + _deep(200).encode() + b"}", 422)
_analyze("deep-in-chaos", b'{"rows": [[' + NINE.encode() + b',1]], "chaos": ' + _deep(200).encode() + b"}", 422)
# unknown fields
_analyze("unknown-field", _json({"rows": [ROW], "rowz": [ROW]}), 422)
_analyze("proto-field", _json({"rows": [ROW], "__proto__": {"admin": True}}), 422)
_analyze("empty-key", _json({"rows": [ROW], "": 1}), 422)
_analyze("chaos-unknown-field", _json({"rows": [ROW], "chaos": {"rm": "-rf"}}), 422)
# 10 MB bodies, with Content-Length and chunked; and the 1 MB limit itself
_analyze("10mb-content-length", lambda: _rows()[:-1] + b" " * TEN_MB + b"}", 413)
_analyze("10mb-chunked", _big_chunks, 413)
_analyze("1mb-plus-one", lambda: _rows()[:-1] + b" " * (MAX_BODY_BYTES + 1 - len(_rows())) + b"}", 413)
_analyze("exactly-1mb", lambda: _rows()[:-1] + b" " * (MAX_BODY_BYTES - len(_rows())) + b"}", 202)
# content types
_analyze("no-content-type", _rows(), {202, 422}, content_type=None)
_analyze("text-plain", _rows(), 422, content_type="text/plain")
_analyze("form-urlencoded", b"rows=1", 422, content_type="application/x-www-form-urlencoded")
_analyze("multipart", b"--x\r\n\r\n--x--", 422, content_type="multipart/form-data; boundary=x")
_analyze("json-suffix-type", _rows(), 202, content_type="application/vnd.api+json")
# credentials and headers
_analyze("no-api-key", _rows(), 401, **{"x-api-key": None})
_analyze("wrong-api-key", _rows(), 401, **{"x-api-key": "wrong"})
_analyze("api-key-prefix", _rows(), 401, **{"x-api-key": API_KEY[:-1]})
_analyze("api-key-latin1", _rows(), 401, **{"x-api-key": "cl\xe9"})
_analyze("no-api-key-malformed-json", b"{", 400, **{"x-api-key": None})
# (without a body: requests would replace a Content-Length header by the body's length)
_analyze("content-length-letters", None, 400, **{"content-length": "abc"})
_analyze("content-length-negative", None, 400, **{"content-length": "-1"})
_analyze("content-length-superscript", None, 400, **{"content-length": "\xb2"})
_analyze("content-length-huge", None, 413, **{"content-length": "9" * 40})

for _prefix, _op in (("/jobs/", JOBS), ("/job_status/", JOB_STATUS)):
    for _id, _expect in [
        ("bad..id", 400),
        ("a" * 129, 400),
        ("a" * 10_000, 400),
        ("job$1", 400),
        ("x%20y", 400),
        ("%00", 400),
        ("a%0Ab", 400),
        ("rq:job:x", 400),
        ("*", 400),
        ("%C3%A9", 400),
        ("%F0%9F%92%A5", 400),
        ("%FF", 400),
        ("%25", 400),
        ("..%2F..%2Fetc%2Fpasswd", 404),  # decoded to a path no route matches
        ("%2e%2e", {400, 404}),
        ("-", 404),
        ("_", 404),
        ("a" * 128, 404),
        (str(uuid.uuid4()), 404),
    ]:
        _label = _id if len(_id) <= 24 else f"{_id[:4]}...({len(_id)} chars)"
        EXPLICIT.append((f"{_prefix}{_label}", _op, "GET", _prefix + _id, {}, _set(_expect)))
    EXPLICIT.append((f"{_prefix}-empty", _op, "GET", _prefix, {}, {404}))
    EXPLICIT.append((f"{_prefix}-10mb-body", _op, "GET", _prefix + "x", {"data": lambda: b"x" * TEN_MB}, {413}))
    EXPLICIT.append((f"{_prefix}-delete", _op, "DELETE", _prefix + "x", {}, {405}))

for _op, _method, _path in ((REDIS_PING, "GET", "/admin/redis_ping"), (CLEANUP, "POST", "/admin/cleanup_jobs")):
    for _auth, _expect in [
        (None, 401),
        ("", 401),
        ("Bearer", 401),
        ("Bearer ", 401),
        ("Bearer wrong", 401),
        (f"bearer {ADMIN_TOKEN}", 401),
        (f"Basic {ADMIN_TOKEN}", 401),
        (ADMIN_TOKEN, 401),
        (f"Bearer {ADMIN_TOKEN}x", 401),
        (f"Bearer {ADMIN_TOKEN[:-1]}", 401),
        ("Bearer \xe9\xff", 401),
        ("Bearer " + "x" * 100_000, 401),
        (BEARER, 200),
    ]:
        _headers = {} if _auth is None else {"authorization": _auth}
        _label = "none" if _auth is None else _auth.replace(ADMIN_TOKEN, "TOKEN")[:24]
        EXPLICIT.append((f"{_path}-auth-{_label}", _op, _method, _path, {"headers": _headers}, {_expect}))
    _other = "POST" if _method == "GET" else "GET"
    EXPLICIT.append(
        (
            f"{_path}-10mb-with-token",
            _op,
            _method,
            _path,
            {"headers": {"authorization": BEARER}, "data": lambda: b"{" * TEN_MB},
            {413},
        )
    )
    EXPLICIT.append((f"{_path}-10mb-chunked-no-token", _op, _method, _path, {"data": _big_chunks}, {401, 413}))
    EXPLICIT.append(
        (
            f"{_path}-json-body-with-token",
            _op,
            _method,
            _path,
            {"headers": {"authorization": BEARER, "content-type": JSON_CT}, "data": b'{"all": true}'},
            {200},
        )
    )
    EXPLICIT.append((f"{_path}-wrong-method", _op, _other, _path, {"headers": {"authorization": BEARER}}, {405}))

for _op, _path in ((PING, "/ping"), (METRICS, "/metrics")):
    EXPLICIT += [
        (f"{_path}-query", _op, "GET", _path, {"params": {"x": "1", "format": "json", "a[]": "%00"}}, {200}),
        (f"{_path}-json-body", _op, "GET", _path, {"data": b'{"x": NaN}', "headers": {"content-type": JSON_CT}}, {200}),
        (f"{_path}-10mb-body", _op, "GET", _path, {"data": lambda: b"\x00" * TEN_MB}, {413}),
        (f"{_path}-post", _op, "POST", _path, {"data": b"{}"}, {405}),
        (f"{_path}-put", _op, "PUT", _path, {}, {405}),
        (f"{_path}-options", _op, "OPTIONS", _path, {}, {405}),
        (f"{_path}-content-length-letters", _op, "GET", _path, {"headers": {"content-length": "x"}}, {400}),
        # '²'.isdigit() is True but int('²') raises: octets a real client can send in a header
        (f"{_path}-content-length-superscript", _op, "GET", _path, {"headers": {"content-length": "\xb2"}}, {400}),
        (f"{_path}-content-length-huge", _op, "GET", _path, {"headers": {"content-length": "9" * 40}}, {413}),
    ]
EXPLICIT.append(("unknown-path", PING, "GET", "/nope", {}, {404}))


@pytest.mark.parametrize("op, method, path, kwargs, expect", [pytest.param(*c[1:], id=c[0]) for c in EXPLICIT])
def test_explicit_case(
    client, redis: Redis, raw_redis: Redis, op: str, method: str, path: str, kwargs: dict, expect: set[int]
) -> None:
    kwargs = {k: v() if callable(v) else v for k, v in kwargs.items()}
    data = kwargs.get("data")
    sent_body = data if isinstance(data, bytes) else None
    status, body = _exchange(
        redis,
        raw_redis,
        op,
        "explicit",
        lambda: client.request(method, path, allow_redirects=False, **kwargs),
        sent_body=sent_body,
    )
    assert status in expect, (status, body)


# -- 3. Hypothesis: valid bodies with extreme values enqueue exactly one faithful job -----------

_finite = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -0.0, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308]),
)


@st.composite
def _valid_bodies(draw) -> dict[str, Any]:
    model = draw(st.sampled_from(sorted(MODELS)))
    n = MODELS[model].n_features
    body: dict[str, Any] = {"rows": draw(st.lists(st.lists(_finite, min_size=n, max_size=n), min_size=1, max_size=4))}
    if model != "diabetes" or draw(st.booleans()):
        body["model"] = model
    optional = {
        "explainer": st.sampled_from(["tree", "kernel"]),
        "background_size": st.sampled_from([1, 50, 100]),
        "nsamples": st.sampled_from([10, 200, 5000]),
        "chaos": st.none(),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    return body


def test_valid_bodies_enqueue_once(client, redis: Redis, raw_redis: Redis) -> None:
    @settings(max_examples=60, **HYPOTHESIS)
    @given(body=_valid_bodies())
    def check(body: dict[str, Any]) -> None:
        raw = _json(body)
        headers = {"content-type": JSON_CT, "x-api-key": API_KEY}
        status, data = _exchange(
            redis, raw_redis, ANALYZE, "valid-bodies", lambda: client.post("/analyze", data=raw, headers=headers)
        )
        assert status == 202, (status, data)

    check()


# -- 4. Hypothesis: junk at every endpoint ------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_bodies = st.one_of(
    st.none(),
    st.binary(max_size=200),
    _json_values.map(lambda v: json.dumps(v).encode()),  # NaN / Infinity included
    _json_values.map(lambda v: json.dumps({"rows": v}).encode()),
)
# Header values; no leading or trailing whitespace, which the HTTP client refuses to send (requests >= 2.32).
_latin1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=20).map(
    str.strip
)


@st.composite
def _junk(draw) -> tuple[str, str, str, dict[str, Any]]:
    op = draw(st.sampled_from(OPERATIONS))
    method, path = op.split(" ")
    if op in JOB_OPS:
        path = path.replace("{job_id}", quote(draw(st.text(min_size=1, max_size=30)), safe=""))
    headers = {}
    content_type = draw(st.sampled_from([None, JSON_CT, "text/plain", "application/merge-patch+json", "a/b;;"]))
    if content_type:
        headers["content-type"] = content_type
    if op in ADMIN_OPS:
        headers["authorization"] = draw(st.sampled_from([BEARER, "Bearer x"]) | _latin1)
    if op == ANALYZE:
        headers["x-api-key"] = draw(st.sampled_from([API_KEY, ""]) | _latin1)
    query = draw(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3))
    return op, method, path, {"headers": headers, "data": draw(_bodies), "params": query}


def test_junk_requests(client, redis: Redis, raw_redis: Redis) -> None:
    @settings(max_examples=200, **HYPOTHESIS)
    @given(junk=_junk())
    def check(junk: tuple[str, str, str, dict[str, Any]]) -> None:
        op, method, path, kwargs = junk
        status, data = _exchange(
            redis,
            raw_redis,
            op,
            "junk",
            lambda: client.request(method, path, allow_redirects=False, **kwargs),
            sent_body=kwargs["data"],
        )
        if op in ADMIN_OPS:
            assert status == (200 if kwargs["headers"]["authorization"] == BEARER else 401), (status, data)
        if op in (PING, METRICS):
            assert status == 200, (status, data)

    check()


# -- totals ---------------------------------------------------------------------------------------


def test_totals() -> None:
    planned = {f"{op}-{mode.value}" for op, mode, _ in FUZZ_PLAN}
    if planned != DONE:
        pytest.skip(f"run the whole module to check totals (fuzzed: {sorted(DONE)})")
    per_op = Counter()
    for (op, _), n in SENT.items():
        per_op[op] += n
    generated = sum(n for (_, source), n in SENT.items() if source.startswith("schemathesis-"))
    table = "\n".join(
        f"  {op:28} {per_op[op]:5}  " + ", ".join(f"{s}={n}" for (o, s), n in sorted(SENT.items()) if o == op)
        for op in OPERATIONS
    )
    statuses = ", ".join(f"{o.split()[1]}:{s}={n}" for (o, s), n in sorted(STATUSES.items()))
    print(f"\nrequests sent: {sum(SENT.values())} (schemathesis: {generated})\n{table}\nstatuses: {statuses}")
    assert sum(SENT.values()) >= MIN_REQUESTS
    assert generated >= MIN_REQUESTS
    for op in OPERATIONS:
        assert per_op[op] >= 20, (op, per_op[op])
    assert not any(status >= 500 for (_, status) in STATUSES)
    # Both sides of each gate were exercised, not just the rejections.
    assert STATUSES[(ANALYZE, 202)] > 0 and STATUSES[(ANALYZE, 401)] > 0 and STATUSES[(ANALYZE, 422)] > 0
    for op in ADMIN_OPS:
        assert STATUSES[(op, 200)] > 0 and STATUSES[(op, 401)] > 0, op
    for op in JOB_OPS:
        assert all(STATUSES[(op, s)] > 0 for s in (200, 400, 404)), op
