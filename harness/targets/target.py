"""The target file: what is under test, as one TOML table.

    target = load_target("my-service.toml")        # or [tool.harness] of a pyproject.toml
    target.worker_argv(name="w1", redis_url=url)    # the worker command, placeholders filled in

A target names the commands that start the service (a worker, optionally an API), its queues and
serializer, how the harness submits jobs (`rq`: probe jobs straight onto its queues; `http`: its
own API, described path by path) and how a finished job's result is checked. Nothing else about
the service is assumed: no flags are added to its commands, no endpoint of ours is called.
docs/TARGETS.md documents every key; `harness/targets/shipped/` holds the targets this
repository's own tests run (`harness run --target plain-rq` names one of them).
"""

from __future__ import annotations

import re
import shlex
import string
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.defaults import JOB_KINDS

__all__ = [
    "API_FIELDS",
    "WORKER_FIELDS",
    "HttpSubmit",
    "Target",
    "TargetError",
    "check_command",
    "load_target",
    "shipped_targets",
    "target_from_table",
]

SHIPPED = Path(__file__).parent / "shipped"
SUBMIT_MODES = ("rq", "http")
SERIALIZERS = ("pickle", "json")
#: Result checks a target may name (or "package.module:function", called with (result, request)).
RESULT_CHECKS = ("shap", "probe", "none")
#: Placeholders each command may use; anything else in braces is an error, not a silent literal.
WORKER_FIELDS = ("python", "redis_url", "queues", "queue", "name", "fix")
API_FIELDS = ("python", "redis_url", "queues", "queue", "port")
ENV_FIELDS = ("python", "redis_url", "queues", "queue")
TOP_KEYS = {
    "name",
    "description",
    "worker",
    "api",
    "queues",
    "serializer",
    "ports",
    "submit",
    "result_check",
    "env",
    "witness_env",
}


class TargetError(ValueError):
    """A target file the harness cannot use; the message names the file and the key."""


@dataclass(frozen=True, kw_only=True)
class HttpSubmit:
    """How jobs are submitted to, and read back from, the target's own HTTP API.

    `body` maps a job kind to a JSON template ({rows} and the workload's {slow_s}, {alloc_mb},
    {hold_s}, {hang} are filled in); a kind without a body is not submitted. `headers_from_env`
    maps a header to the environment variable holding its value: the value is read when the run
    starts and is never logged nor written to the report. The `*_field` keys are dotted paths
    into the JSON answers ("data.id")."""

    path: str = "/analyze"
    method: str = "POST"
    status_path: str = "/jobs/{id}"
    ready_path: str = "/ping"
    accepted: tuple[int, ...] = (200, 201, 202)
    job_id_field: str = "job_id"
    status_field: str = "status"
    result_field: str = "result"
    error_field: str = "error"
    attempts_field: str | None = None
    worker_field: str | None = None
    body: Mapping[str, str] | None = None  # None: this repository's SHAP request (the workload's own)
    headers_from_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Target:
    """The service under test, as a target file describes it."""

    name: str
    worker: str
    # --fix NAME runs worker_variants[NAME]; "*" stands for any other NAME (given as {fix}).
    worker_variants: Mapping[str, str] = field(default_factory=dict)
    api: str | None = None
    queues: tuple[str, ...] = ("default",)
    serializer: str = "pickle"
    ports: tuple[int, int] | None = None
    submit: str = "rq"
    http: HttpSubmit | None = None
    result_check: str = "probe"
    env: Mapping[str, str] = field(default_factory=dict)
    # http: the service's variable that gets the witness's URL (its jobs then record there).
    witness_env: str | None = None
    source: str = "<table>"
    workdir: Path | None = None  # where its commands run: the target file's directory

    @property
    def queue(self) -> str:
        return self.queues[0]

    @property
    def has_witness(self) -> bool:
        """The harness starts a witness: for its probe jobs (rq), or for jobs that record
        themselves in it (http with `witness_env`)."""
        return self.submit == "rq" or self.witness_env is not None

    def worker_command(self, fix: str = "bundled") -> str:
        """The worker command for `--fix fix`: `worker`, or one of `worker_variants`."""
        if fix == "bundled":
            return self.worker
        if fix in self.worker_variants:
            return self.worker_variants[fix]
        if "*" in self.worker_variants:
            return self.worker_variants["*"]
        known = ", ".join(["bundled", *self.worker_variants]) or "bundled"
        raise TargetError(f"{self.source}: target {self.name!r} has no worker variant {fix!r} (it has: {known})")

    def worker_argv(
        self, *, name: str, redis_url: str, fix: str = "bundled", python: str = sys.executable
    ) -> list[str]:
        values = {"python": python, "redis_url": redis_url, "queues": " ".join(self.queues), "queue": self.queue}
        return _argv(self.worker_command(fix), {**values, "name": name, "fix": fix})

    def api_argv(self, *, port: int, redis_url: str, python: str = sys.executable) -> list[str] | None:
        if self.api is None:
            return None
        values = {"python": python, "redis_url": redis_url, "queues": " ".join(self.queues), "queue": self.queue}
        return _argv(self.api, {**values, "port": str(port)})

    def env_for(self, *, redis_url: str, python: str = sys.executable) -> dict[str, str]:
        """`env` with its placeholders filled in (a URL with a password stays out of argv)."""
        values = {"python": python, "redis_url": redis_url, "queues": " ".join(self.queues), "queue": self.queue}
        return {k: v.format_map(values) for k, v in self.env.items()}

    @property
    def impossible_faults(self) -> tuple[str, ...]:
        """Faults that have nothing to hit in this target (api-crash without an API)."""
        return ("api-crash",) if self.api is None else ()

    def skip_reason(self, *, faults: Iterable[str], kinds: Iterable[str]) -> str | None:
        """Why a scenario with these faults and job kinds cannot run against this target."""
        if self.api is None and "api-crash" in set(faults):
            return f"target {self.name} has no API for api-crash to crash"
        if self.http is not None and self.http.body is not None:
            missing = sorted(set(kinds) - set(self.http.body))
            if missing:
                return f"target {self.name} has no submit.body for job kind(s) {', '.join(missing)}"
        return None

    def headers(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The HTTP headers of every request, their values read from `environ` now."""
        if self.http is None:
            return {}
        missing = [var for var in self.http.headers_from_env.values() if not environ.get(var)]
        if missing:
            raise TargetError(f"{self.source}: set {', '.join(sorted(missing))} (submit.headers_from_env needs it)")
        return {header: environ[var] for header, var in self.http.headers_from_env.items()}


def _argv(template: str, values: Mapping[str, str]) -> list[str]:
    """shlex-split first, then fill each word: a value with spaces stays one word, except
    {queues}, which is one word per queue when it stands alone."""
    out: list[str] = []
    for word in shlex.split(template):
        if word == "{queues}":
            out.extend(values["queues"].split())
        else:
            out.append(word.format_map(values))
    return out


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def check_command(source: str, key: str, template: Any, allowed: tuple[str, ...], *, need: tuple[str, ...]) -> str:
    if not isinstance(template, str) or not template.strip():
        raise TargetError(f"{source}: {key} must be a non-empty command string")
    try:
        shlex.split(template)
        used = _fields(template)
    except ValueError as exc:
        raise TargetError(f"{source}: {key}: {exc}") from None
    unknown = sorted(used - set(allowed))
    if unknown:
        raise TargetError(
            f"{source}: {key} uses unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)};"
            f" it may use {', '.join('{' + a + '}' for a in allowed)}"
        )
    for placeholder in need:
        if placeholder not in used:
            raise TargetError(
                f"{source}: {key} must contain {{{placeholder}}}: the harness names each worker so that"
                " it can tell them apart in RQ's registry"
            )
    return template


def _str_map(source: str, key: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, (str, int, float)) for v in value.values()):
        raise TargetError(f"{source}: {key} must be a table of strings")
    return {str(k): str(v) for k, v in value.items()}


def _env(source: str, value: Any) -> dict[str, str]:
    env = _str_map(source, "env", value)
    for key, text in env.items():
        try:
            unknown = sorted(_fields(text) - set(ENV_FIELDS))
        except ValueError as exc:
            raise TargetError(f"{source}: env.{key}: {exc}") from None
        if unknown:
            raise TargetError(f"{source}: env.{key} uses unknown placeholder(s) {unknown}; it may use {ENV_FIELDS}")
    return env


def _http(source: str, table: Any) -> HttpSubmit:
    if not isinstance(table, Mapping):
        raise TargetError(f"{source}: submit must be a table")
    allowed = {f for f in HttpSubmit.__dataclass_fields__} | {"mode"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise TargetError(f"{source}: unknown key(s) in [submit]: {', '.join(unknown)}")
    kw: dict[str, Any] = {k: v for k, v in table.items() if k != "mode"}
    for key in ("path", "status_path", "ready_path"):
        if key in kw and not (isinstance(kw[key], str) and kw[key].startswith("/")):
            raise TargetError(f"{source}: submit.{key} must be a path starting with /")
    if "{id}" not in str(kw.get("status_path", "/jobs/{id}")):
        raise TargetError(f"{source}: submit.status_path must contain {{id}} (the job id)")
    if "method" in kw:
        kw["method"] = str(kw["method"]).upper()
        if kw["method"] not in ("POST", "PUT"):
            raise TargetError(f"{source}: submit.method must be POST or PUT")
    if "accepted" in kw:
        kw["accepted"] = tuple(int(c) for c in kw["accepted"])
    if "body" in kw:
        body = _str_map(source, "submit.body", kw["body"])
        unknown_kinds = sorted(set(body) - set(JOB_KINDS))
        if unknown_kinds:
            raise TargetError(f"{source}: submit.body has unknown job kind(s) {unknown_kinds}; kinds: {JOB_KINDS}")
        kw["body"] = body
    kw["headers_from_env"] = _str_map(source, "submit.headers_from_env", kw.get("headers_from_env"))
    return HttpSubmit(**kw)


def target_from_table(table: Mapping[str, Any], *, source: str = "<table>", workdir: Path | None = None) -> Target:
    """A `Target` from a parsed TOML table (a target file, or `[tool.harness]`)."""
    unknown = sorted(set(table) - TOP_KEYS)
    if unknown:
        hint = ""
        if {"api_cmd", "worker_cmd", "queue"} & set(unknown):
            hint = " (api_cmd / worker_cmd / queue became api.command / worker.command / queues)"
        raise TargetError(f"{source}: unknown key(s) {', '.join(unknown)}{hint}")
    worker = table.get("worker")
    if not isinstance(worker, Mapping) or "command" not in worker:
        raise TargetError(f"{source}: [worker] with a command is required")
    command = check_command(source, "worker.command", worker["command"], WORKER_FIELDS, need=("name",))
    variants = {}
    for fix, cmd in _str_map(source, "worker.variants", worker.get("variants")).items():
        variants[fix] = check_command(source, f"worker.variants.{fix}", cmd, WORKER_FIELDS, need=("name",))
    api = table.get("api")
    api_cmd = None
    if api is not None:
        if not isinstance(api, Mapping) or "command" not in api:
            raise TargetError(f"{source}: [api] needs a command")
        api_cmd = check_command(source, "api.command", api["command"], API_FIELDS, need=())
    queues = table.get("queues", ["default"])
    if isinstance(queues, str):
        queues = [queues]
    if not queues or not all(isinstance(q, str) and re.fullmatch(r"[\w.:-]+", q) for q in queues):
        raise TargetError(f"{source}: queues must be a list of queue names (letters, digits, . : - _)")
    serializer = table.get("serializer", "pickle")
    if serializer not in SERIALIZERS:
        raise TargetError(f"{source}: serializer must be one of {', '.join(SERIALIZERS)}, not {serializer!r}")
    ports = table.get("ports")
    if ports is not None:
        if not (isinstance(ports, list) and len(ports) == 2 and all(isinstance(p, int) for p in ports)):
            raise TargetError(f"{source}: ports must be [first, last]")
        if not 1024 <= ports[0] < ports[1] <= 65535:
            raise TargetError(f"{source}: ports must be 1024 <= first < last <= 65535")
        ports = (ports[0], ports[1])
    submit = table.get("submit", {"mode": "rq"})
    mode = submit.get("mode", "rq") if isinstance(submit, Mapping) else None
    if mode not in SUBMIT_MODES:
        raise TargetError(f"{source}: submit.mode must be one of {', '.join(SUBMIT_MODES)}")
    http = None
    if mode == "http":
        if api_cmd is None:
            raise TargetError(f"{source}: submit.mode = 'http' needs an [api] command")
        http = _http(source, submit)
    elif set(submit) - {"mode"}:
        raise TargetError(f"{source}: submit.mode = 'rq' takes no other [submit] keys")
    check = table.get("result_check", "probe" if mode == "rq" else "none")
    if not isinstance(check, str) or (check not in RESULT_CHECKS and not re.fullmatch(r"[\w.]+:\w+", check)):
        raise TargetError(
            f"{source}: result_check must be one of {', '.join(RESULT_CHECKS)} or 'package.module:function'"
        )
    if mode == "rq" and check == "shap":
        raise TargetError(f"{source}: result_check 'shap' needs submit.mode = 'http' (probe jobs return no SHAP)")
    witness_env = table.get("witness_env")
    if witness_env is not None:
        if mode != "http" or not (isinstance(witness_env, str) and re.fullmatch(r"[A-Z_][A-Z0-9_]*", witness_env)):
            raise TargetError(f"{source}: witness_env must be an environment variable name (http submission only)")
    return Target(
        name=str(table.get("name") or Path(source).stem),
        worker=command,
        worker_variants=variants,
        api=api_cmd,
        queues=tuple(queues),
        serializer=serializer,
        ports=ports,
        submit=mode,
        http=http,
        result_check=check,
        env=_env(source, table.get("env")),
        witness_env=witness_env,
        source=source,
        workdir=workdir,
    )


def shipped_targets() -> dict[str, Path]:
    """The target files shipped with the harness, by name."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.toml"))}


def load_target(spec: str | Path) -> Target:
    """A target from a file, a pyproject.toml (its `[tool.harness]`), or a shipped target's name."""
    path = Path(spec)
    if not path.exists() and str(spec) in shipped_targets():
        path = shipped_targets()[str(spec)]
    if not path.is_file():
        names = ", ".join(shipped_targets())
        raise TargetError(f"no target file {spec} (a path, or one of the shipped targets: {names})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: not valid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("harness")
        if not isinstance(data, Mapping):
            raise TargetError(f"{path}: has no [tool.harness] table")
    return target_from_table(data, source=str(path), workdir=path.resolve().parent)
