"""How a Stack is realised: the small interface faults and the scenario runner use.

    stack = make_stack("docker", StackConfig(workers=2), run_id="r1")   # or "local"
    with stack:
        handle = stack.worker(name)      # a WorkerControl
        handle.kill()                    # SIGKILL the whole tree / `docker kill`

Two backends implement it: `local` (`harness.backends.local.stack.Stack`: processes on loopback, the default,
no Docker needed) and `docker` (`harness.backends.docker.stack.DockerStack`: testcontainers, one
container per process on a per-run network). A fault talks to a backend only through
`Backend` and `WorkerControl`; which jobs run where it reads from Redis (RQ's own data), so the
same fault works on either. Everything a backend cannot do raises `Unsupported`, and
`Backend.unsupported(fault)` says so before a run starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from redis import Redis

    from harness.backends.config import StackConfig

__all__ = ["BACKENDS", "Backend", "EnvironmentMissing", "Unsupported", "WorkerControl", "make_stack", "worker_argv"]

#: Backends `--backend` accepts (`remote`, a deployment reached by URL only, is `harness verify`).
BACKENDS = ("local", "docker")


class EnvironmentMissing(RuntimeError):
    """Something the stack needs is not installed (exit code 3 in the CLI)."""


class Unsupported(RuntimeError):
    """This backend cannot do what a fault asked (e.g. cut a worker off Redis without a proxy)."""


@runtime_checkable
class WorkerControl(Protocol):
    """One worker as a fault sees it: a process tree (local) or a container (docker)."""

    name: str

    def alive(self) -> bool:
        """The worker parent (local) / the container (docker) is running (a paused one counts)."""
        ...

    def exit_code(self) -> int | None:
        """Exit code once it ended (137 after SIGKILL), else None."""
        ...

    def horse_pids(self) -> list[int]:
        """The work-horse(s) running now (pids in the worker's own pid namespace)."""
        ...

    def kill(self) -> dict[str, Any]:
        """SIGKILL everything, work-horse included, as a dying container; returns after it exited."""
        ...

    def kill_horse(self) -> list[int]:
        """SIGKILL only the work-horse(s); returns the pids hit (empty: there was none)."""
        ...

    def pause(self) -> dict[str, Any]:
        """Freeze the whole tree (SIGSTOP / `docker pause`)."""
        ...

    def resume(self) -> None:
        """Undo `pause` (SIGCONT / `docker unpause`)."""
        ...

    def terminate(self, grace_s: float = 30.0) -> dict[str, Any]:
        """SIGTERM the worker parent (warm shutdown); does not wait. Docker: `docker stop -t grace_s`."""
        ...

    def partition(self) -> dict[str, Any]:
        """Cut this worker off Redis (its proxy / `docker network disconnect`)."""
        ...

    def heal_partition(self) -> None:
        """Undo `partition`."""
        ...

    def log_tail(self, lines: int = 30) -> str: ...


@runtime_checkable
class Backend(Protocol):
    """Redis + API + N workers, running; what `run_scenario` and the faults use."""

    backend: str  # "local" | "docker"
    config: StackConfig
    run_id: str
    log_dir: Path
    workers: list[Any]  # WorkerControl
    startup_s: dict[str, float]

    @property
    def redis_url(self) -> str:
        """Redis as the host reaches it."""
        ...

    @property
    def api_url(self) -> str:
        """The API as the host reaches it."""
        ...

    @property
    def redis(self) -> Redis: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...

    def worker(self, name: str) -> Any:
        """The WorkerControl named `name` (KeyError if this stack did not start it)."""
        ...

    def add_worker(self, *, wait: bool = True, fix: str | None = None, env: dict[str, str] | None = None) -> Any:
        """Start one more worker (a platform restarting an instance)."""
        ...

    def service_env(self, **extra: str) -> dict[str, str]:
        """The settings the API and the workers get (their KEY_PREFIX, for one)."""
        ...

    def kill_redis(self) -> dict[str, Any]:
        """SIGKILL Redis and wait for it to be gone."""
        ...

    def start_redis(self) -> None:
        """Start Redis (again), on the same address, and wait for PING."""
        ...

    def kill_api(self) -> dict[str, Any]:
        """SIGKILL the API and wait for it to be gone."""
        ...

    def start_api(self) -> None:
        """Start the API (again), on the same address, and wait for /ping."""
        ...

    def unsupported(self, fault: str) -> str | None:
        """Why the fault named `fault` makes no sense on this backend, or None when it does."""
        ...


def make_stack(backend: str, config: StackConfig, *, run_id: str | None = None) -> Backend:
    """A not yet started stack of `backend` ("local" or "docker") for `config`."""
    if backend == "local":
        from harness.backends.local.stack import Stack

        return Stack(config, run_id=run_id)
    if backend == "docker":
        from harness.backends.docker.stack import DockerStack

        return DockerStack(config, run_id=run_id)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def worker_argv(command: Sequence[str], *, name: str, fix: str, python: str) -> list[str]:
    """One worker's command line. `bundled` and `none` run the target's own worker command (`none`
    passes `--fix none`); a deliberately broken fix runs `harness.testing.worker` under `python`."""
    if fix == "bundled":
        return [*command, "--name", name]
    if fix == "none":
        return [*command, "--name", name, "--fix", "none"]
    return [python, "-m", "harness.testing.worker", "--name", name, "--fix", fix]
