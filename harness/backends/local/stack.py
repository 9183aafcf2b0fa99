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
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Self

from redis import Redis

from harness.backends.base import Unsupported, worker_argv
from harness.backends.client import ServiceClient
from harness.backends.config import StackConfig, free_port
from harness.backends.local.processes import ManagedProcess, reap_leftovers, title_label
from harness.backends.local.redis_server import find_redis_server
from harness.backends.local.tls import tls_files
from harness.backends.local.worker import WorkerHandle
from harness.backends.readiness import http_ok, redis_pings, rq_worker_registered
from harness.nemesis.proxy import TcpProxy
from harness.targets.witness import Witness
from harness.wait import NotReady, wait_until

__all__ = ["Stack"]


class Stack(ServiceClient):
    """Redis, the API and N workers as local processes, labelled with the run id."""

    backend = "local"

    def __init__(self, config: StackConfig | None = None, *, run_id: str | None = None) -> None:
        super().__init__(config, run_id=run_id)
        self.redis_port = free_port()
        self.api_port = self._free_port()
        self.redis_proc: ManagedProcess | None = None
        self.api_proc: ManagedProcess | None = None
        self.workers: list[WorkerHandle] = []
        self._worker_seq = 0
        self._redis: Redis | None = None
        self.startup_s: dict[str, float] = {}
        self.witness: Witness | None = None  # the harness's own Redis, for probe jobs (rq targets)

    # -- addresses ---------------------------------------------------------------------------

    def _free_port(self) -> int:
        """A port for the service under test: in the target's range when it names one."""
        return free_port(self.config.target.ports if self.config.target is not None else None)

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
        return tls_files(self.log_dir / "tls")

    def service_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "PYTEST_"))}
        # A target's commands (`rq worker ...`) run from the harness's own environment first.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        target = self.config.target
        if self.witness is not None and target is not None and target.witness_env:
            env[target.witness_env] = self.witness.url
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
        target = self.config.target
        if target is not None and target.has_witness:
            self.witness = Witness(self.log_dir, run_id=self.run_id).start()
        if self.has_api:
            self.start_api()
        for _ in range(self.config.workers):
            self.add_worker(wait=False)
        for handle in self.workers:
            self._wait_worker(handle)
        self.startup_s["total"] = time.monotonic() - t0
        return self

    def _proc(self, name: str, argv: list[str], env: dict[str, str], *, service: bool = False) -> ManagedProcess:
        """Start one labelled process; the service's own (`service`) run in its target's directory."""
        env = {**env, "HARNESS_PROC": name}
        target = self.config.target
        cwd = target.workdir if service and target is not None else None
        return ManagedProcess(name, argv, env=env, log_dir=self.log_dir, run_id=self.run_id, cwd=cwd).start()

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
                setattr(self, attr, self._free_port() if attr == "api_port" else free_port())

    def start_redis(self) -> None:
        # A restart keeps its port: the API and the workers are connected to it.
        self._retry_port(self._start_redis, "redis_port", fixed=self.redis_proc is not None)

    def start_api(self) -> None:
        if not self.has_api:
            raise Unsupported(f"target {self.config.target.name} has no API")  # type: ignore[union-attr]
        self._retry_port(self._start_api, "api_port")

    def _start_redis(self) -> None:
        argv = [
            self.config.redis_server or find_redis_server(),
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

    @property
    def has_api(self) -> bool:
        """False for a target without an API (jobs go straight onto its queues)."""
        return self.config.target is None or self.config.target.api is not None

    def _start_api(self) -> None:
        target = self.config.target
        ready = "/ping"
        if target is None:
            argv = list(self.config.api_cmd)
        else:
            argv = target.api_argv(port=self.api_port, redis_url=self.redis_url) or []
            ready = target.http.ready_path if target.http is not None else "/"
        self.api_proc = self._proc("api", argv, self.service_env(), service=True)
        self.startup_s["api"] = wait_until(
            http_ok(f"{self.api_url}{ready}"),
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
        env = dict(env or {})
        proxy = None
        if self.config.worker_redis_via_proxy:
            proxy = TcpProxy("127.0.0.1", self.redis_port, name=f"proxy-{name}").start()
            env.setdefault("REDIS_URL", self.redis_url_via(proxy.port))
        fix = fix or self.config.fix
        target = self.config.target
        if target is None:
            argv = worker_argv(self.config.worker_cmd, name=name, fix=fix, python=sys.executable)
        else:
            argv = target.worker_argv(name=name, redis_url=env.get("REDIS_URL", self.redis_url), fix=fix)
        handle = WorkerHandle(name, self._proc(name, argv, self.service_env(**env), service=True), proxy)
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

    @staticmethod
    def _kill(proc: ManagedProcess | None, what: str) -> dict[str, Any]:
        """SIGKILL one of the stack's processes and wait until it is gone."""
        if proc is None:
            raise Unsupported(f"the stack has no {what} process")
        pids = proc.signal_tree(signal.SIGKILL)
        if proc.proc is not None:
            proc.proc.wait(timeout=5)
        return {"pids": pids}

    def kill_redis(self) -> dict[str, Any]:
        """SIGKILL Redis and wait until it is gone."""
        return self._kill(self.redis_proc, "Redis")

    def restart_redis(self, *, down_s: float = 0.0) -> None:
        """SIGKILL Redis and start it again on the same port (data survives only with AOF)."""
        self.kill_redis()
        time.sleep(down_s)
        self.start_redis()

    def kill_api(self) -> dict[str, Any]:
        """SIGKILL the API and wait until it is gone."""
        return self._kill(self.api_proc, "API")

    def unsupported(self, fault: str) -> str | None:
        """Every fault makes sense locally (redis-partition asks for worker_redis_via_proxy),
        except api-crash on a target without an API."""
        if fault == "api-crash" and not self.has_api:
            return "the target has no API to crash (its jobs are enqueued straight onto its queues)"
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
        if self.witness is not None:
            self.witness.stop()
        if self._redis is not None:
            self._redis.close()
        reap_leftovers(run_id=self.run_id)
        if self._own_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)
