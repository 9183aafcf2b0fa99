"""What a stack is made of (`StackConfig`), and where the service under test is named.

Backend-neutral and light: the pytest plugin reads it at start-up without importing a backend.
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import socket
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.targets.target import Target

__all__ = ["StackConfig", "free_port", "harness_table", "new_run_id", "resolve_target", "services_from"]


def free_port(ports: tuple[int, int] | None = None) -> int:
    """A port free on loopback now: any (the kernel's pick), or one in `ports` (first, last)."""
    if ports is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    first, last = ports
    for port in random.sample(range(first, last + 1), last - first + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last}")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    workers: int = 2
    fix: str = "bundled"  # "bundled" | "none" (plain RQ worker, same job code, no sweeper)
    queue: str = "shap-jobs"
    api_cmd: tuple[str, ...] = (sys.executable, "-m", "shap_service.api")
    worker_cmd: tuple[str, ...] = (sys.executable, "-m", "shap_service.worker")
    env: dict[str, str] = field(default_factory=dict)  # extra settings for API and workers
    redis_aof: bool = False
    redis_server: str = ""  # local: the server binary (default: find_redis_server())
    redis_password: str = ""
    redis_tls: bool = False  # Redis speaks only TLS (rediss://, a CA made for the run)
    chaos_hooks: bool = True
    ready_timeout: float = 60.0
    log_dir: Path | None = None  # default: a temp dir removed at exit
    # Each worker reaches Redis through its own harness-owned TcpProxy (WorkerHandle.proxy), so a
    # fault can cut one worker off Redis (a network partition) while the API and others stay.
    # Local only: the docker backend partitions with `docker network disconnect` instead.
    worker_redis_via_proxy: bool = False
    # Docker: each worker container's memory limit (`mem_limit`), which the kernel enforces.
    # Local: not enforced (no delegated cgroup here); the OOM fault's RSS watchdog plays the limit.
    worker_mem_limit_mb: int | None = None
    # The service under test as a target file describes it (harness.targets): when set, its
    # commands, queues and env replace api_cmd / worker_cmd / queue (local backend).
    target: Target | None = None

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue of the service under test (the target's, else `queue`)."""
        return tuple(self.target.queues) if self.target is not None else (self.queue,)

    def service_env(self, *, redis_url: str, admin_token: str, port: int, host: str, **extra: str) -> dict[str, str]:
        """The settings the API and the workers get, on every backend (the backend adds its own
        address for Redis and the API)."""
        env = {
            "REDIS_URL": redis_url,
            "QUEUE_NAME": self.queue,
            "ADMIN_TOKEN": admin_token,
            "PORT": str(port),
            "HOST": host,
            "CHAOS_HOOKS": "1" if self.chaos_hooks else "0",
            "PYTHONUNBUFFERED": "1",
        }
        if self.fix != "bundled":
            # Stock RQ or a deliberately broken layer: the workers' layer is judged alone.
            env["API_SWEEPER"] = "0"
        if self.target is not None:
            env["QUEUE_NAME"] = self.target.queue
            env.update(self.target.env_for(redis_url=extra.get("REDIS_URL", redis_url)))
        env.update(self.env)
        env.update(extra)
        return env


def harness_table(pyproject: Path | None) -> dict[str, Any]:
    """`[tool.harness]` of a pyproject.toml ({} when there is none)."""
    if pyproject is None or not pyproject.exists():
        return {}
    table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("harness", {})
    return dict(table) if isinstance(table, dict) else {}


def resolve_target(
    pyproject: Path | None,
    *,
    target: str | None = None,
    api_cmd: str | None = None,
    worker_cmd: str | None = None,
    queue: str | None = None,
) -> Target:
    """The service under test: `target` (a file or a shipped name), else `[tool.harness]` of
    `pyproject`, else this repository's own service; then the command-line overrides, checked
    as the target file's own keys are (TargetError says what is wrong)."""
    from harness.targets.target import API_FIELDS, WORKER_FIELDS, check_command, load_target

    if target:
        found = load_target(target)
    elif harness_table(pyproject):
        found = load_target(pyproject)  # type: ignore[arg-type]
    else:
        found = load_target("shap-service")
    changes: dict[str, Any] = {}
    if worker_cmd:
        changes["worker"] = check_command("--worker-cmd", "the command", worker_cmd, WORKER_FIELDS, need=("name",))
        changes["worker_variants"] = {}
    if api_cmd:
        changes["api"] = check_command("--api-cmd", "the command", api_cmd, API_FIELDS, need=())
    if queue:
        changes["queues"] = (queue,)
    return dataclasses.replace(found, **changes) if changes else found


def services_from(pyproject: Path | None, **options: str | None) -> dict[str, Any]:
    """StackConfig fields naming the service under test (see `resolve_target`)."""
    found = resolve_target(pyproject, **options)
    return {"target": found, "queue": found.queue}
