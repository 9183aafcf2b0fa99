"""`http` submission: jobs go through the target's own API, as its users' requests do.

With no `HttpSubmit` (this repository's service) the client posts the workload's SHAP bodies to
`/analyze` and reads `/jobs/{id}`, whose answer already speaks the harness's words. A target
file describes another API: method and path, a JSON body per job kind, headers from environment
variables, the status path, and where the job id, status, result, error, attempts and worker
sit in its answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import requests

from harness.defaults import CLIENT_REQUEST_TIMEOUT_S, MISSING
from harness.targets.target import HttpSubmit, TargetError
from harness.workload.client import Answer
from harness.workload.plan import JobSpec, Workload

__all__ = ["HttpJobClient", "dig", "render_body"]


def dig(data: Any, path: str | None) -> Any:
    """The value at a dotted path of a JSON answer ("data.id"), or None."""
    if not path:
        return None
    for part in path.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


def render_body(template: str, spec: JobSpec, workload: Workload) -> Any:
    """A target's body template for `spec`, filled in and parsed as JSON. Placeholders stand
    where a JSON value goes: {rows}, {slow_s}, {alloc_mb}, {hold_s}, {hang}, {request_id}."""
    values = {
        "rows": json.dumps(spec.body.get("rows", [])),
        "slow_s": json.dumps(workload.slow_s),
        "alloc_mb": json.dumps(workload.alloc_mb),
        "hold_s": json.dumps(workload.hold_s),
        "hang": json.dumps(workload.hang),
        "request_id": json.dumps(spec.request_id),
    }
    filled = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)
    try:
        return json.loads(filled)
    except ValueError as exc:
        raise TargetError(f"submit.body.{spec.kind}: not JSON once filled in ({exc}): {filled[:200]}") from None


class HttpJobClient:
    """One client's HTTP session with the target's API."""

    def __init__(
        self,
        *,
        api_url: str,
        workload: Workload | None = None,
        http: HttpSubmit | None = None,
        headers: Mapping[str, str] | None = None,
        request_timeout: float = CLIENT_REQUEST_TIMEOUT_S,
        idempotency_prefix: str | None = None,
    ) -> None:
        """`idempotency_prefix`: each request goes with `Idempotency-Key: <prefix>-<request id>`,
        the same on every retry, so a retry whose first answer was lost finds its job."""
        self.api_url = api_url.rstrip("/")
        self.idempotency_prefix = idempotency_prefix
        self.workload = workload
        self.http = http
        self.timeout = request_timeout
        self.session = requests.Session()
        self.session.headers.update(dict(headers or {}))

    def _body(self, spec: JobSpec) -> Any:
        if self.http is None or self.http.body is None:
            return spec.body
        template = self.http.body.get(spec.kind)
        if template is None or self.workload is None:
            raise TargetError(f"the target has no submit.body for job kind {spec.kind!r}")
        return render_body(template, spec, self.workload)

    def submit(self, spec: JobSpec) -> Answer:
        method, path = ("POST", "/analyze") if self.http is None else (self.http.method, self.http.path)
        accepted = (202,) if self.http is None else self.http.accepted
        body = self._body(spec)
        headers = {}
        if self.idempotency_prefix is not None:
            headers["Idempotency-Key"] = f"{self.idempotency_prefix}-{spec.request_id}"
        try:
            r = self.session.request(method, self.api_url + path, json=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:  # API down (crash) or unreachable: retry
            return Answer(retry=True, error=type(exc).__name__)
        if r.status_code in accepted:
            try:
                job_id = dig(r.json(), "job_id" if self.http is None else self.http.job_id_field)
            except ValueError:
                job_id = None
            if job_id is None:
                return Answer(status=r.status_code, error=f"accepted, but the answer holds no job id: {r.text[:200]}")
            return Answer(job_id=str(job_id), expect={"body": body})  # what the result is judged against
        if r.status_code < 500:  # the request itself is wrong: no point retrying
            return Answer(status=r.status_code, error=_error_text(r))
        return Answer(retry=True, error=f"HTTP {r.status_code}: {_error_text(r)}")  # 503 while Redis is away

    def view(self, job_id: str) -> dict[str, Any] | None:
        """The job's view; {"status": "missing"} on 404; None when the API cannot answer now."""
        path = "/jobs/{id}" if self.http is None else self.http.status_path
        try:
            r = self.session.get(self.api_url + path.replace("{id}", job_id), timeout=self.timeout)
        except requests.RequestException:
            return None
        if r.status_code == 404:
            return {"status": MISSING, "attempts": None, "worker": None}
        if r.status_code != 200:
            return None
        try:
            data = r.json()
        except ValueError:
            return None
        if self.http is None:
            return data
        h = self.http
        base = dict(data) if isinstance(data, Mapping) else {}
        return {
            **base,
            "status": dig(data, h.status_field),
            "result": dig(data, h.result_field),
            "error": dig(data, h.error_field),
            "attempts": dig(data, h.attempts_field),
            "worker": dig(data, h.worker_field),
        }

    def close(self) -> None:
        self.session.close()


def _error_text(r: requests.Response) -> str:
    try:
        return str(r.json().get("error", r.text))[:300]
    except (ValueError, AttributeError):
        return r.text[:300]
