"""Offline images for the docker backend (harness/images.py).

The engine tests are marked `docker`. They skip when no Docker engine answers, with the command
that starts one, except under CI=true or HARNESS_REQUIRE_DOCKER=1, where a missing engine fails.
The first run builds the images (about a minute); later runs reuse them.
The mirror-parsing and tag tests need no engine and always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends.docker import images
from harness.wait import eventually

REQUIRE_DOCKER = os.environ.get("CI", "").lower() == "true" or os.environ.get("HARNESS_REQUIRE_DOCKER") == "1"
HOW_TO_ENABLE = (
    "run scripts/ci_docker.sh (installs docker.io + debootstrap, starts dockerd, builds the images) "
    "and pip install -e '.[docker]'"
)
LABELS = {"harness.managed": "true", "harness.kind": "test"}


def _engine_problem() -> str | None:
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed"
    if not shutil.which("docker"):
        return "the docker CLI is not installed"
    try:
        docker.from_env(timeout=5).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine
        return f"no Docker engine answers ({type(exc).__name__})"
    return None


@pytest.fixture(scope="module")
def client():
    problem = _engine_problem()
    if problem:
        message = f"{problem}; to enable: {HOW_TO_ENABLE}"
        if REQUIRE_DOCKER:
            pytest.fail(f"Docker required (CI=true or HARNESS_REQUIRE_DOCKER=1): {message}")
        pytest.skip(message)
    import docker

    return docker.from_env()


@pytest.fixture(scope="module")
def built(client) -> images.BuildResult:
    """Build once per module (cold: about a minute; warm: reuse)."""
    return images.build()


def _run(client, image: str, command: list[str]) -> str:
    """Run a command in a fresh container without network; the container is always removed."""
    out = client.containers.run(image, command, network_mode="none", remove=True, labels=LABELS)
    return out.decode()


# --- no engine needed -----------------------------------------------------------------------------


def test_mirror_is_read_from_deb822_and_one_line_sources(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HARNESS_DEBIAN_MIRROR", raising=False)
    listdir = tmp_path / "sources.list.d"
    listdir.mkdir()
    (listdir / "security.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    (listdir / "other.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    (listdir / "disabled.sources.disabled").write_text(
        "Types: deb\nURIs: http://wrong.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    assert images.debian_mirror([tmp_path / "absent.list", listdir]) == "http://mirror.example/debian"

    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "# deb http://old.example/debian bookworm main\ndeb [arch=amd64] http://one.example/d bookworm main\n"
    )
    assert images.debian_mirror([one_line]) == "http://one.example/d"

    with pytest.raises(images.BuildError, match="HARNESS_DEBIAN_MIRROR"):
        images.debian_mirror([listdir / "security.sources"])
    monkeypatch.setenv("HARNESS_DEBIAN_MIRROR", "http://override.example/debian")
    assert images.debian_mirror([]) == "http://override.example/debian"


def test_app_tag_follows_sources_dependencies_and_base(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "shap_service").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\ndependencies = ["b", "a"]\n')
    (project / "shap_service" / "m.py").write_text("x = 1\n")
    tag = images.app_tag("base1", project)
    assert tag == images.app_tag("base1", project), "tags must be deterministic"

    (project / "shap_service" / "__pycache__").mkdir()
    (project / "shap_service" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"junk")
    assert images.app_tag("base1", project) == tag, "bytecode must not change the tag"

    (project / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\ndependencies = ["a", "b"]\n')
    assert images.app_tag("base1", project) == tag, "the dependency set is sorted"

    assert images.app_tag("base2", project) != tag
    (project / "shap_service" / "m.py").write_text("x = 2\n")
    assert images.app_tag("base1", project) != tag


# --- with an engine -------------------------------------------------------------------------------


@pytest.mark.docker
def test_the_build_context_holds_every_package_the_wheel_installs(tmp_path: Path) -> None:
    """The app image is a wheel built from a copy of the checkout: each package the wheel
    installs (pyproject's package list, however it is spelled) must be in that copy."""
    dest = images.copy_project(Path(__file__).resolve().parents[1], tmp_path / "src")
    for package in ("rq_recovery", "shap_service", "harness"):
        assert (dest / package / "__init__.py").is_file(), package
    assert (dest / "harness" / "report" / "templates" / "report.html").is_file()
    assert (dest / "pyproject.toml").is_file() and not (dest / "tests").exists()


def test_build_reuses_existing_tags(client, built: images.BuildResult) -> None:
    assert built.base == f"{images.BASE_REPO}:{images.base_tag()}"
    assert built.app == images.service_image() == f"{images.APP_REPO}:{images.app_tag()}"
    t0 = time.monotonic()
    again = images.build()
    elapsed = time.monotonic() - t0
    assert again.built == (), "a warm build must reuse both images"
    assert (again.base, again.app) == (built.base, built.app)
    assert elapsed < 5, f"warm build took {elapsed:.1f} s"
    listed = {i["name"]: i["kind"] for i in images.list_images()}
    assert listed.get(built.app) == "app" and listed.get(built.base) == "base"
    labels = client.images.get(built.app).labels
    assert labels["harness.managed"] == "true" and labels["harness.base"] == built.base


@pytest.mark.docker
def test_app_image_runs_without_network(client, built: images.BuildResult) -> None:
    assert _run(client, built.app, ["shap-worker", "--version"]).strip().startswith("shap-worker ")
    out = _run(client, built.app, ["python", "-c", "import shap_service, shap, rq; print('ok')"])
    assert out.strip() == "ok"
    config = client.images.get(built.app).attrs["Config"]
    assert config["Cmd"] == ["shap-worker"] and "HOST=0.0.0.0" in config["Env"]


@pytest.mark.docker
def test_redis_image_answers_ping(client, built: images.BuildResult) -> None:
    container = client.containers.run(
        images.redis_image(),
        ["redis-server", "--protected-mode", "no"],
        detach=True,
        network_mode="none",
        labels=LABELS,
    )
    try:

        def pong() -> bool:
            code, output = container.exec_run(["redis-cli", "ping"])
            return code == 0 and output.decode().strip() == "PONG"

        assert eventually(pong, timeout=15, interval=0.2), container.logs(tail=20).decode()
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_forbid_pulls_refuses_every_pull(client) -> None:
    from docker.errors import ImageNotFound

    missing = "harness-never-built/nothing:0"
    restore = images.forbid_pulls()
    try:
        with pytest.raises(images.PullForbidden, match="harness images build --offline"):
            client.images.pull("redis", tag="7")
        with pytest.raises(images.PullForbidden, match="harness images build --offline"):
            client.api.pull("python", tag="3.11-slim")
        # What testcontainers does: run -> ImageNotFound -> pull. It must stop at the pull.
        with pytest.raises(images.PullForbidden):
            client.containers.run(missing, labels=LABELS, remove=True)
    finally:
        restore()
    with pytest.raises(ImageNotFound):
        client.images.get(missing)


@pytest.mark.docker
def test_require_images_names_the_build_command(client, built: images.BuildResult) -> None:
    images.require_images([built.app, images.redis_image()], client=client)
    with pytest.raises(images.ImagesMissing, match=r"harness-never-built:0.*harness images build --offline"):
        images.require_images([built.app, "harness-never-built:0"], client=client)


@pytest.mark.docker
def test_cli_list_shows_the_images(client, built: images.BuildResult) -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "images", "list"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert built.app in out.stdout and built.base in out.stdout
