"""The docker backend: the same Stack (Redis + API + N workers) as containers, via testcontainers.

    with DockerStack(StackConfig(workers=2)) as stack:      # or make_stack("docker", config)
        job_id = stack.submit(rows)["job_id"]
        stack.wait_terminal(job_id)

* One Docker network per run; Redis is reachable inside it by the alias `redis`, and the API and
  workers get `REDIS_URL=redis://redis:6379/0`. The host reaches Redis and the API only through
  ports mapped to 127.0.0.1 (fixed for the stack's life, so a restarted container keeps them).
* Redis: `redis-server --protected-mode no --appendonly yes --dir /data`, /data on a named
  volume of the run (the AOF survives `docker kill` + `docker start`).
* API: `shap-api` with HOST=0.0.0.0; workers: `shap-worker --name <name>`, CHAOS_HOOKS=1, the
  profile's settings, `mem_limit` = `StackConfig.worker_mem_limit_mb` (no swap).
* Never a pull: `TESTCONTAINERS_RYUK_DISABLED=true` is set before testcontainers is imported,
  `images.forbid_pulls()` is active while the stack lives, and `images.require_images` runs
  before anything starts (missing images: `DockerUnavailable` naming the build command).
* Cleanup replaces Ryuk: every container, the network and the volume carry `harness.run=<run
  id>`, `harness.managed=true` and `harness.owner=<host>:<pid>:<start time>`; `stop()` removes
  them (also after a failed start, on an exception or Ctrl-C inside the `with`; SIGTERM is
  turned into KeyboardInterrupt while the stack lives), and every new stack first removes the
  leftovers of runs whose owner process is gone (`reap_leftovers`).
* Readiness: Redis PING through the mapped port, API `GET /ping`, each worker registered in RQ.
* Docker events of the run's containers (oom, die, kill, pause, ...) are collected while the
  stack lives (`container_events`) and saved as `docker-events.jsonl` beside the container logs.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Self

from redis import Redis  # noqa: E402

import harness.backends.docker.images as images  # noqa: E402
from harness.backends.base import (  # noqa: E402
    Unsupported,
    worker_argv,
)
from harness.backends.client import ServiceClient
from harness.backends.config import StackConfig, free_port
from harness.backends.docker.engine import preflight
from harness.backends.docker.reaper import (
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_OWNER,
    LABEL_ROLE,
    LABEL_RUN,
    owner_label,
    reap_leftovers,
    remove_run,
)
from harness.backends.docker.worker import Box, DockerWorker
from harness.backends.readiness import http_ok, redis_pings, rq_worker_registered  # noqa: E402
from harness.wait import wait_until  # noqa: E402

if TYPE_CHECKING:
    from docker import DockerClient
    from testcontainers.core.network import Network

__all__ = ["DockerStack"]

#: Ports inside the containers.
REDIS_PORT = 6379
API_PORT = 8000
#: How the containers reach Redis on the run's network.
REDIS_ALIAS = "redis"

#: Docker's embedded DNS can drop a query for a container that is being started again (a
#: restarted Redis); glibc's default then waits 5 s, longer than a lease. Ask again after 1 s.
RESOLVER_OPTIONS = ["timeout:1", "attempts:3"]


class DockerStack(ServiceClient):
    """Redis, the API and N workers as containers on a per-run network, labelled with the run id."""

    backend = "docker"

    def __init__(
        self,
        config: StackConfig | None = None,
        *,
        run_id: str | None = None,
        service_image: str | None = None,
        redis_image: str | None = None,
        api_command: Sequence[str] = ("shap-api",),
        worker_command: Sequence[str] = ("shap-worker",),
    ) -> None:
        super().__init__(config, run_id=run_id)
        self.service_image = service_image
        self.redis_image = redis_image
        self.api_command = tuple(api_command)
        self.worker_command = tuple(worker_command)
        self.redis_port = 0
        self.api_port = 0
        self.workers: list[DockerWorker] = []
        self.startup_s: dict[str, float] = {}
        self.redis_box: Box | None = None
        self.api_box: Box | None = None
        self._worker_seq = 0
        self._redis: Redis | None = None
        self._client: DockerClient | None = None
        self._network: Network | None = None
        self._volume: Any = None
        self._labels = {LABEL_RUN: self.run_id, LABEL_MANAGED: "true", LABEL_OWNER: owner_label()}
        self._token = secrets.token_hex(3)  # worker names: w1-<token>, unique across runs
        self._events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self._event_stream: Any = None
        self._event_thread: threading.Thread | None = None
        self._restore_pulls: Callable[[], None] | None = None
        self._old_sigterm: Any = None
        self._api_t0 = 0.0

    # -- addresses ---------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        return f"harness-{self.run_id}"

    @property
    def redis_url(self) -> str:
        auth = f":{self.config.redis_password}@" if self.config.redis_password else ""
        return f"redis://{auth}127.0.0.1:{self.redis_port}/0"

    @property
    def internal_redis_url(self) -> str:
        """Redis as the containers reach it (network alias)."""
        auth = f":{self.config.redis_password}@" if self.config.redis_password else ""
        return f"redis://{auth}{REDIS_ALIAS}:{REDIS_PORT}/0"

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            import docker

            self._client = docker.from_env()
        return self._client

    def network_client(self) -> Any:
        """The docker SDK's object for this run's network."""
        assert self._network is not None, "the stack is not started"
        return self._network._unwrap_network

    def service_env(self, **extra: str) -> dict[str, str]:
        return self.config.service_env(
            redis_url=self.internal_redis_url, admin_token=self.admin_token, port=API_PORT, host="0.0.0.0", **extra
        )

    def unsupported(self, fault: str) -> str | None:
        """Every fault has a container form (see harness.nemesis)."""
        return None

    # -- lifecycle ---------------------------------------------------------------------------

    def _entering(self) -> None:
        """While the stack lives, SIGTERM unwinds like Ctrl-C, so the `with` removes everything."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._old_sigterm = signal.signal(signal.SIGTERM, interrupt)

    def preflight(self) -> None:
        """Engine answers and both images exist locally; raises DockerUnavailable otherwise."""
        self.service_image, self.redis_image = preflight(self.service_image, self.redis_image)

    def start(self) -> Self:
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.network import Network

        testcontainers_config.ryuk_disabled = True  # also when the env was read before us
        self._restore_pulls = images.forbid_pulls()
        self.preflight()
        reap_leftovers(self.client)
        t0 = time.monotonic()
        self._watch_events()
        network = Network(docker_network_kw={"labels": dict(self._labels)})
        network.name = self.prefix
        self._network = network.create()
        self._volume = self.client.volumes.create(name=f"{self.prefix}-redis-data", labels=dict(self._labels))
        self.redis_port = free_port()
        self.api_port = free_port()
        self.start_redis()
        self._create_api()
        for _ in range(self.config.workers):
            self.add_worker(wait=False)
        self._wait_api()
        for handle in self.workers:
            self._wait_worker(handle)
        self.startup_s["total"] = time.monotonic() - t0
        return self

    def _container(self, role: str, name: str, command: Sequence[str], **kwargs: Any) -> Box:
        from testcontainers.core.container import DockerContainer

        image = self.redis_image if role == "redis" else self.service_image
        assert image is not None and self._network is not None
        labels = {**self._labels, LABEL_ROLE: role, LABEL_NAME: name}
        container = DockerContainer(
            image,
            command=list(command),  # type: ignore[arg-type]  # the SDK takes an argv list
            name=f"{self.prefix}-{name}",
            network=self._network,
            network_aliases=[name],
            labels=labels,
            dns_opt=RESOLVER_OPTIONS,
            **kwargs,
        )
        return Box(name, container)

    def start_redis(self) -> None:
        """Create and start the Redis container, or start it again after `kill_redis`."""
        t0 = time.monotonic()
        if self.redis_box is None:
            argv = ["redis-server", "--port", str(REDIS_PORT), "--protected-mode", "no", "--dir", "/data"]
            argv += ["--appendonly", "yes" if self.config.redis_aof else "no", "--appendfsync", "always"]
            argv += ["--save", ""]
            if self.config.redis_password:
                argv += ["--requirepass", self.config.redis_password]
            box = self._container("redis", REDIS_ALIAS, argv, volumes=[(self._volume.name, "/data", "rw")])
            box.tc.ports[f"{REDIS_PORT}/tcp"] = ("127.0.0.1", self.redis_port)  # type: ignore[assignment]
            self.redis_box = box
            box.tc.start()
        else:
            self.redis_box.start_again()
        box = self.redis_box
        wait_until(
            redis_pings(self.redis_url),
            what="redis container",
            timeout=20,
            log_tail=lambda: box.logs(30),
            alive=box.alive,
        )
        self.startup_s["redis"] = time.monotonic() - t0

    def kill_redis(self) -> dict[str, Any]:
        if self.redis_box is None:
            raise Unsupported("the stack has no Redis container")
        return self.redis_box.kill()

    def restart_redis(self, *, down_s: float = 0.0) -> None:
        """`docker kill` + `docker start` of Redis (data survives only with the AOF)."""
        self.kill_redis()
        time.sleep(down_s)
        self.start_redis()

    def _create_api(self) -> None:
        self._api_t0 = time.monotonic()
        if self.api_box is None:
            box = self._container("api", "api", self.api_command, env=self.service_env())
            box.tc.ports[f"{API_PORT}/tcp"] = ("127.0.0.1", self.api_port)  # type: ignore[assignment]
            self.api_box = box
            box.tc.start()
        else:
            self.api_box.start_again()

    def _wait_api(self) -> None:
        box = self.api_box
        assert box is not None
        wait_until(
            http_ok(f"{self.api_url}/ping"),
            what="api container",
            timeout=self.config.ready_timeout,
            log_tail=lambda: box.logs(30),
            alive=box.alive,
        )
        self.startup_s["api"] = time.monotonic() - self._api_t0

    def start_api(self) -> None:
        """Create and start the API container, or start it again after `kill_api`."""
        self._create_api()
        self._wait_api()

    def kill_api(self) -> dict[str, Any]:
        if self.api_box is None:
            raise Unsupported("the stack has no API container")
        return self.api_box.kill()

    def add_worker(
        self, *, wait: bool = True, fix: str | None = None, env: dict[str, str] | None = None
    ) -> DockerWorker:
        self._worker_seq += 1
        name = f"w{self._worker_seq}-{self._token}"
        argv = worker_argv(self.worker_command, name=name, fix=fix or self.config.fix, python="python")
        limit = self.config.worker_mem_limit_mb
        kwargs: dict[str, Any] = {}
        if limit:
            kwargs.update(mem_limit=f"{limit}m", memswap_limit=f"{limit}m")  # no swap: a hard limit
        box = self._container("worker", name, argv, env=self.service_env(**(env or {})), **kwargs)
        handle = DockerWorker(name, box, self, limit)
        self.workers.append(handle)
        handle._launch()
        if wait:
            self._wait_worker(handle)
        return handle

    def _wait_worker(self, handle: DockerWorker) -> None:
        handle.wait_started(self.config.ready_timeout)
        wait_until(
            rq_worker_registered(self.redis, handle.name),
            what=f"worker container {handle.name}",
            timeout=self.config.ready_timeout,
            log_tail=lambda: handle.log_tail(30),
            alive=handle.alive,
        )
        self.startup_s[handle.name] = time.monotonic() - handle._t0

    # -- docker events -----------------------------------------------------------------------

    def _watch_events(self) -> None:
        stream = self.client.events(decode=True, filters={"type": "container", "label": f"{LABEL_RUN}={self.run_id}"})
        self._event_stream = stream

        def pump() -> None:
            try:
                for e in stream:
                    attrs = (e.get("Actor") or {}).get("Attributes") or {}
                    event = {
                        "t": time.monotonic(),
                        "time": e.get("timeNano", 0) / 1e9,
                        "action": str(e.get("Action", "")).split(":", 1)[0],
                        "container": str(e.get("id", ""))[:12],
                        "name": attrs.get(LABEL_NAME),
                        "role": attrs.get(LABEL_ROLE),
                        "worker": attrs.get(LABEL_NAME) if attrs.get(LABEL_ROLE) == "worker" else None,
                    }
                    for key in ("exitCode", "signal"):
                        if key in attrs:
                            event[key] = attrs[key]
                    with self._events_lock:
                        self._events.append(event)
            except Exception:  # noqa: BLE001 - the stream is closed at stop()
                pass

        self._event_thread = threading.Thread(target=pump, name=f"docker-events-{self.run_id}", daemon=True)
        self._event_thread.start()

    def container_events_count(self) -> int:
        with self._events_lock:
            return len(self._events)

    def container_events(self, *, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Docker events of this run's containers from index `since` on, and the next index."""
        with self._events_lock:
            return list(self._events[since:]), len(self._events)

    # -- teardown ----------------------------------------------------------------------------

    def _boxes(self) -> list[Box]:
        return [w.box for w in self.workers] + [b for b in (self.api_box, self.redis_box) if b is not None]

    def save_logs(self) -> None:
        """Every container's log, and the docker events, into log_dir."""
        for box in self._boxes():
            if box.started:
                (self.log_dir / f"{box.name}.log").write_text(box.logs(), encoding="utf-8")
        with self._events_lock:
            events = list(self._events)
        with open(self.log_dir / "docker-events.jsonl", "w", encoding="utf-8") as fh:
            for e in events:
                fh.write(json.dumps(e) + "\n")

    def stop(self) -> None:
        """Remove every container, the network and the volume of this run (idempotent)."""
        try:
            if not self._own_dir and self._client is not None:
                with contextlib.suppress(Exception):
                    self.save_logs()
            for w in self.workers:
                if w._starter is not None:
                    w._starter.join(60)  # a container created after the removal would leak
            boxes = self._boxes()
            if boxes:
                with ThreadPoolExecutor(max_workers=len(boxes)) as pool:
                    list(pool.map(lambda b: b.remove(), boxes))
            if self._network is not None:
                with contextlib.suppress(Exception):
                    self._network.remove()
            if self._volume is not None:
                with contextlib.suppress(Exception):
                    self._volume.remove(force=True)
            if self._client is not None:
                remove_run(self.run_id, self._client)  # whatever a half-done start left
        finally:
            if self._event_stream is not None:
                with contextlib.suppress(Exception):
                    self._event_stream.close()
            if self._redis is not None:
                self._redis.close()
                self._redis = None
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._restore_pulls is not None:
                self._restore_pulls()
                self._restore_pulls = None
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None
            if self._own_dir:
                shutil.rmtree(self.log_dir, ignore_errors=True)
            self.redis_box = self.api_box = None
            self.workers = []
            self._network = self._volume = None
