"""Cleanup without Ryuk: every container, network and volume of a run carries labels, and is
removed by them (at the end of a run, and for runs whose owner process is gone)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = [
    "LABEL_MANAGED",
    "LABEL_NAME",
    "LABEL_OWNER",
    "LABEL_ROLE",
    "LABEL_RUN",
    "owner_label",
    "reap_leftovers",
    "remove_run",
    "run_objects",
]

LABEL_RUN = "harness.run"
LABEL_MANAGED = "harness.managed"
LABEL_OWNER = "harness.owner"
LABEL_ROLE = "harness.role"
LABEL_NAME = "harness.name"


def owner_label() -> str:
    """`host:pid:start time` of this process: who owns the objects it labels."""
    me = psutil.Process()
    return f"{socket.gethostname()}:{me.pid}:{me.create_time():.0f}"


def _owner_gone(owner: str | None) -> bool:
    """True for an owner label of this host whose process no longer exists."""
    if not owner:
        return True  # unlabelled harness object: no one owns it
    host, _, rest = owner.partition(":")
    pid_s, _, started = rest.partition(":")
    if host != socket.gethostname():
        return False  # another machine's run on a shared engine: not ours to judge
    try:
        proc = psutil.Process(int(pid_s))
        return started != "" and f"{proc.create_time():.0f}" != started
    except (psutil.NoSuchProcess, ValueError):
        return True


def _remove_where(client: DockerClient, keep: Callable[[dict[str, str]], bool]) -> list[str]:
    """Remove containers, then networks, then volumes labelled harness.run unless `keep(labels)`."""
    removed: list[str] = []
    flt = {"label": [LABEL_RUN, f"{LABEL_MANAGED}=true"]}
    # ignore_removed: a container can vanish between the list and its inspect (a parallel reap).
    for c in client.containers.list(all=True, filters=flt, ignore_removed=True):
        if keep(c.labels):
            continue
        try:
            if c.status == "paused":
                c.unpause()
            c.remove(force=True, v=True)
            removed.append(f"container {c.name}")
        except Exception:  # noqa: BLE001 - gone meanwhile
            pass
    for n in client.networks.list(filters=flt):
        if keep(n.attrs.get("Labels") or {}):
            continue
        try:
            n.remove()
            removed.append(f"network {n.name}")
        except Exception:  # noqa: BLE001
            pass
    for v in client.volumes.list(filters=flt):
        if keep(v.attrs.get("Labels") or {}):
            continue
        try:
            v.remove(force=True)
            removed.append(f"volume {v.name}")
        except Exception:  # noqa: BLE001
            pass
    return removed


def reap_leftovers(client: DockerClient | None = None) -> list[str]:
    """Remove what earlier runs left behind (their owner process is gone): Ryuk's job, by label."""
    import docker

    client = client or docker.from_env()
    return _remove_where(client, lambda labels: not _owner_gone(labels.get(LABEL_OWNER)))


def remove_run(run_id: str, client: DockerClient | None = None) -> list[str]:
    """Remove every container, network and volume labelled `harness.run=<run_id>`."""
    import docker

    client = client or docker.from_env()
    return _remove_where(client, lambda labels: labels.get(LABEL_RUN) != run_id)


def run_objects(run_id: str, client: DockerClient | None = None) -> list[str]:
    """What still exists with `harness.run=<run_id>` (containers, networks, volumes)."""
    import docker

    client = client or docker.from_env()
    flt = {"label": f"{LABEL_RUN}={run_id}"}
    found = [f"container {c.name}" for c in client.containers.list(all=True, filters=flt, ignore_removed=True)]
    found += [f"network {n.name}" for n in client.networks.list(filters=flt)]
    found += [f"volume {v.name}" for v in client.volumes.list(filters=flt)]
    return found
