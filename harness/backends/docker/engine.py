"""Whether the docker backend can run here: SDK, CLI, an engine that answers, local images."""

from __future__ import annotations

import shutil

import harness.backends.docker.images as images
from harness.backends.base import EnvironmentMissing

__all__ = ["HOW_TO_ENABLE", "DockerUnavailable", "docker_problem", "preflight"]

HOW_TO_ENABLE = (
    "start an engine and build the images with scripts/ci_docker.sh (or `harness images build --offline` "
    "once an engine answers), and pip install -e '.[docker]'"
)


class DockerUnavailable(EnvironmentMissing):
    """No Docker engine answers, the SDK is missing, or the images are not built (exit code 3)."""


def docker_problem(timeout: float = 5.0) -> str | None:
    """Why the docker backend cannot run here (SDK, CLI, engine), or None when it can."""
    try:
        import docker
        import testcontainers  # noqa: F401
    except ImportError as exc:
        return f"the docker extra is not installed ({exc.name}); pip install -e '.[docker]'"
    if not shutil.which("docker"):
        return "the docker CLI is not installed"
    try:
        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine
        return f"no Docker engine answers ({type(exc).__name__})"
    return None


def preflight(service_image: str | None = None, redis_image: str | None = None) -> tuple[str, str]:
    """An engine answers and both images exist on it (never pulls); returns the image names.

    Raises DockerUnavailable (an EnvironmentMissing: exit code 3 in the CLI) naming what to do.
    """
    problem = docker_problem()
    if problem:
        raise DockerUnavailable(f"docker backend: {problem}; to enable: {HOW_TO_ENABLE}")
    service_image = service_image or images.service_image()
    redis_image = redis_image or images.redis_image()
    try:
        images.require_images([service_image, redis_image])
    except images.ImagesMissing as exc:
        raise DockerUnavailable(f"docker backend: {exc}") from None
    return service_image, redis_image
