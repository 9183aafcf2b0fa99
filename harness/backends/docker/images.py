"""Docker images for the harness's docker backend, built offline: no registry, never a pull.

Long on purpose (~520 lines): one recipe, read top to bottom (mirror, base rootfs, wheels, app
layer, tags, labels, the build lock, the pull guard), whose steps share their names and paths.

    harness images build --offline [--force]   build what is missing (warm: well under 1 s)
    harness images list                        the images this module made
    harness images prune                       keep the newest app and base image, drop the rest

Machines without a registry cannot `docker pull python:3.11-slim` or `redis:7`, and `pip` inside
`docker build` may fail on TLS (an intercepting proxy's CA the build container lacks). So:

* base image: `debootstrap --variant=minbase bookworm` from the host's own Debian mirror, then
  `apt-get install python3 python3-venv python3-pip redis-server ca-certificates` in a chroot,
  then `tar | docker import`. It doubles as the Redis image (Debian's `redis-server`).
* app image: the host downloads the wheels (it has working TLS) for the container's Python, a
  container with `--network none` installs them into `/opt/venv`, `docker commit` saves it.

Tags are content hashes, so a tag that exists is reused and a changed input makes a new tag.
Every image and build container carries the label `harness.managed=true`. `Dockerfile` at the
repository root is the ordinary route for teams with a registry; set `HARNESS_SERVICE_IMAGE` /
`HARNESS_REDIS_IMAGE` to use images built that way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.backends.docker.reaper import LABEL_MANAGED

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = [
    "APP_REPO",
    "BASE_REPO",
    "BUILD_COMMAND",
    "BuildError",
    "BuildResult",
    "ImagesMissing",
    "PullForbidden",
    "app_tag",
    "base_tag",
    "build",
    "copy_project",
    "debian_mirror",
    "forbid_pulls",
    "list_images",
    "prune",
    "redis_image",
    "require_images",
    "service_image",
    "wheel_packages",
]

#: Debian suite of the base image. Its python3 (3.11.2) and glibc (2.36) decide which wheels fit.
SUITE = "bookworm"
CONTAINER_PYTHON = "311"
CONTAINER_GLIBC_MINOR = 36
#: What the chroot installs; part of the base tag.
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "redis-server", "ca-certificates")
#: Wheels the host's pip would not pick for the container: pip evaluates markers against the
#: host's Python (3.11.7 here), and redis-py needs async-timeout only on Python < 3.11.3.
EXTRA_WHEELS = ("async-timeout",)
#: Bump when the build steps change in a way the inputs below do not capture.
RECIPE = 1

BASE_REPO = "shap-chaos-base"
APP_REPO = "shap-chaos"
KIND = "harness.kind"
BUILD_COMMAND = "harness images build --offline"
_HOW_TO_BUILD = f"build them with `{BUILD_COMMAND}` (same as `python -m harness images build --offline`)"

PROJECT = Path(__file__).resolve().parents[3]
APP_USER = "app"
IMAGE_PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOCK_FILE = Path(tempfile.gettempdir()) / "harness-images.lock"
SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


class BuildError(RuntimeError):
    """A build step failed; the message names the step and ends with its output's last lines."""


class ImagesMissing(RuntimeError):
    """Images a session needs are not on this engine; the message says how to build them."""


class PullForbidden(RuntimeError):
    """Something tried to pull an image in a session that must never touch a registry."""


@dataclass(frozen=True)
class BuildResult:
    """Image names, which of them this call built (empty: all reused), and seconds per step."""

    base: str
    app: str
    built: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)


# --- inputs and tags ----------------------------------------------------------------------------


def _sources_entries(path: Path) -> Iterator[dict[str, list[str]]]:
    """APT entries of one file as {types, uris, suites, components}, one-line or deb822 format."""
    text = path.read_text(errors="replace")
    if path.suffix == ".sources":
        for para in re.split(r"\n\s*\n", text):
            fields: dict[str, list[str]] = {}
            for line in para.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
            if fields.get("enabled", ["yes"])[0].lower() != "no":
                yield fields
        return
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0])  # drop comments and [options]
        words = line.split()
        if len(words) >= 3:
            yield {"types": words[:1], "uris": words[1:2], "suites": words[2:3], "components": words[3:]}


def debian_mirror(sources: Iterable[Path] = SOURCES) -> str:
    """The host's Debian mirror for SUITE: the one that already works here (proxy, snapshot, ...).

    `HARNESS_DEBIAN_MIRROR` overrides. Files ending in anything but .list/.sources are ignored,
    as APT ignores them.
    """
    if os.environ.get("HARNESS_DEBIAN_MIRROR"):
        return os.environ["HARNESS_DEBIAN_MIRROR"]
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += sorted(p for p in src.iterdir() if p.suffix in (".list", ".sources"))
        elif src.is_file():
            files.append(src)
    for path in files:
        for entry in _sources_entries(path):
            uris = [u for u in entry.get("uris", []) if re.match(r"(https?|file)://", u)]
            if "deb" in entry.get("types", []) and SUITE in entry.get("suites", []) and uris:
                if "main" in entry.get("components", []):
                    return uris[0]
    raise BuildError(
        f"no APT source for Debian {SUITE} main in {', '.join(map(str, files)) or 'no sources files'}; "
        "set HARNESS_DEBIAN_MIRROR=http://deb.debian.org/debian (or your mirror)"
    )


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def base_tag() -> str:
    """Hash of what goes into the base image: suite and packages (the mirror is only a transport)."""
    return _digest({"recipe": RECIPE, "suite": SUITE, "packages": sorted(BASE_PACKAGES)})


def _project_meta(project: Path) -> dict:
    pyproject = project / "pyproject.toml"
    if not pyproject.is_file():
        raise BuildError(f"{pyproject} not found: building the app image needs a source checkout")
    return tomllib.loads(pyproject.read_text())


def _source_digest(project: Path) -> str:
    """Hash of the service's and the fix's files (paths and bytes): a code change makes a new app tag."""
    h = hashlib.sha256()
    for root in (project / "rq_recovery", project / "shap_service"):
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            h.update(path.relative_to(project).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def app_tag(base: str | None = None, project: Path = PROJECT) -> str:
    """Hash of the base tag, the sorted dependency set, the project version and the sources."""
    meta = _project_meta(project)["project"]
    return _digest(
        {
            "recipe": RECIPE,
            "base": base or base_tag(),
            "python": CONTAINER_PYTHON,
            "dependencies": sorted([*meta.get("dependencies", []), *EXTRA_WHEELS]),
            "version": meta["version"],
            "sources": _source_digest(project),
        }
    )


# --- talking to the engine (the docker CLI: needs no Python SDK, streams `tar | docker import`) ----


def _run(argv: Sequence[object], *, step: str, **kwargs) -> str:
    """Run one build step, output captured; on failure raise with the step's name and last lines."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise BuildError(f"{step} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def _exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def _labels(kind: str, **extra: str) -> list[str]:
    """`--change LABEL ...` arguments: what `list` and `prune` find the images by."""
    labels = {LABEL_MANAGED: "true", KIND: kind, **{f"harness.{k}": v for k, v in extra.items()}}
    return [a for k, v in labels.items() for a in ("--change", f"LABEL {k}={json.dumps(v)}")]


def _log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


# --- building -----------------------------------------------------------------------------------


def _unmount_under(root: Path) -> None:
    """Undo mounts debootstrap may leave inside ROOTFS when it fails, before anything deletes it."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _build_base(name: str, seconds: dict[str, float]) -> None:
    """debootstrap + chroot apt-get + `tar | docker import`: a Debian image without a registry."""
    if os.geteuid() != 0:
        raise BuildError("building the base image needs root (debootstrap, chroot)")
    if not shutil.which("debootstrap"):
        raise BuildError("debootstrap not found: apt-get install -y debootstrap")
    mirror = debian_mirror()
    rootfs = Path(tempfile.mkdtemp(prefix="harness-rootfs-", dir="/var/tmp"))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    try:
        t0 = time.monotonic()
        _log(f"debootstrap {SUITE} from {mirror} ...")
        _run(["debootstrap", "--variant=minbase", SUITE, rootfs, mirror], step="debootstrap", env=env)
        seconds["debootstrap"] = time.monotonic() - t0

        t0 = time.monotonic()
        _log(f"chroot apt-get install {' '.join(BASE_PACKAGES)} ...")
        policy = rootfs / "usr/sbin/policy-rc.d"  # packages must not start services in the chroot
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        apt = ["chroot", rootfs, "apt-get", "-q", "-y", "-o", "APT::Install-Recommends=false"]
        _run([*apt, "install", *BASE_PACKAGES], step="apt-get install", env=env)
        _run([*apt, "clean"], step="apt-get clean", env=env)
        policy.unlink()
        for lists in (rootfs / "var/lib/apt/lists").glob("*_*"):
            lists.unlink()
        seconds["apt"] = time.monotonic() - t0

        t0 = time.monotonic()
        _log(f"docker import {name} ...")
        tar = subprocess.Popen(
            ["tar", "-C", rootfs, "--numeric-owner", "--one-file-system", "-c", "."], stdout=subprocess.PIPE
        )
        changes = [*_labels("base", suite=SUITE, packages=" ".join(BASE_PACKAGES)), "--change", 'CMD ["bash"]']
        changes += ["--change", f"ENV PATH={IMAGE_PATH.removeprefix('/opt/venv/bin:')}"]
        try:
            _run(["docker", "import", *changes, "-", name], step="docker import", stdin=tar.stdout)
        finally:
            tar.stdout.close()  # type: ignore[union-attr]
            if tar.wait() != 0:
                raise BuildError(f"tar of {rootfs} failed (exit {tar.returncode})")
        seconds["import"] = time.monotonic() - t0
    finally:
        _unmount_under(rootfs)
        subprocess.run(["rm", "-rf", "--one-file-system", str(rootfs)], check=False)


def copy_project(project: Path, dest: Path) -> Path:
    """Copy what the wheel needs, so `pip wheel` never writes build/ into a checkout others edit."""
    meta = _project_meta(project)
    dest.mkdir(parents=True)
    for name in ["pyproject.toml", meta["project"].get("readme", "README.md")]:
        if (project / name).is_file():
            shutil.copy2(project / name, dest / name)
    for top in wheel_packages(meta):
        shutil.copytree(project / top, dest / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def wheel_packages(meta: dict) -> list[str]:
    """The top-level packages pyproject's `[tool.setuptools]` puts in the wheel: a `packages`
    list, or `packages.find`'s `include` patterns (`harness*` -> `harness`)."""
    packages = meta.get("tool", {}).get("setuptools", {}).get("packages", ["shap_service"])
    if isinstance(packages, dict):
        packages = packages.get("find", {}).get("include", [])
    tops = {str(name).split(".")[0].rstrip("*") for name in packages}
    if not tops:
        raise BuildError("pyproject.toml names no package for the wheel ([tool.setuptools] packages)")
    return sorted(tops)


def _platforms() -> list[str]:
    """manylinux tags the container's glibc runs; pip does not expand manylinux_2_X by itself."""
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(CONTAINER_GLIBC_MINOR, 16, -1)]
    return [a for tag in [*tags, "manylinux2014_x86_64"] for a in ("--platform", tag)]


def _build_app(name: str, tag: str, base: str, project: Path, seconds: dict[str, float]) -> None:
    """Host pip fetches the wheels; a `--network none` container installs them; `docker commit`."""
    meta = _project_meta(project)["project"]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    with tempfile.TemporaryDirectory(prefix="harness-wheels-") as tmp:
        wheels = Path(tmp) / "wheels"
        t0 = time.monotonic()
        _log(f"pip download for cp{CONTAINER_PYTHON} manylinux x86_64 ...")
        target = ["--only-binary=:all:", "--implementation", "cp", "--python-version", CONTAINER_PYTHON]
        target += ["--abi", f"cp{CONTAINER_PYTHON}", *_platforms()]
        deps = [*meta.get("dependencies", []), *EXTRA_WHEELS]
        _run([*pip, "download", "--dest", wheels, *target, *deps], step="pip download")
        src = copy_project(project, Path(tmp) / "src")
        _run([*pip, "wheel", "--no-deps", "--wheel-dir", wheels, src], step="pip wheel (this project)")
        seconds["wheels"] = time.monotonic() - t0

        t0 = time.monotonic()
        _log(f"install into /opt/venv (--network none) and docker commit {name} ...")
        container = f"harness-build-{tag}"
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)  # a crashed build's leftover
        script = (
            "set -e; python3 -m venv /opt/venv; "
            "/opt/venv/bin/pip install -q --no-index --no-cache-dir --disable-pip-version-check "
            f"--find-links /wh '{meta['name']}=={meta['version']}' {' '.join(EXTRA_WHEELS)}; "
            f"useradd --create-home --uid 10001 --user-group {APP_USER}; "
            "/opt/venv/bin/shap-worker --version"
        )
        run = ["docker", "run", "--name", container, "--label", f"{LABEL_MANAGED}=true", "--label", f"{KIND}=build"]
        run += ["--network", "none", "-v", f"{wheels}:/wh:ro", base, "sh", "-c", script]
        try:
            _run(run, step="pip install in the container")
            changes = _labels("app", base=base, version=meta["version"])
            for change in [
                f"ENV PATH={IMAGE_PATH}",
                "ENV HOST=0.0.0.0",  # shap-api binds 127.0.0.1 by default: unreachable from outside
                "ENV PYTHONUNBUFFERED=1",
                f"ENV HOME=/home/{APP_USER}",
                f"USER {APP_USER}",
                f"WORKDIR /home/{APP_USER}",
                "EXPOSE 8000",
                'CMD ["shap-worker"]',
            ]:
                changes += ["--change", change]
            _run(["docker", "commit", *changes, container, name], step="docker commit")
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        seconds["install"] = time.monotonic() - t0


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time per machine (pytest-xdist, two shells): the second one then reuses."""
    with open(LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(*, force: bool = False, project: Path = PROJECT) -> BuildResult:
    """Build the base and app images unless their content-hash tags already exist (then: reuse)."""
    t_all = time.monotonic()
    seconds: dict[str, float] = {}
    built: list[str] = []
    btag = base_tag()
    base = f"{BASE_REPO}:{btag}"
    atag = app_tag(btag, project)
    app = f"{APP_REPO}:{atag}"
    with _build_lock():
        if force or not _exists(base):
            t0 = time.monotonic()
            _build_base(base, seconds)
            seconds["base"] = time.monotonic() - t0
            built.append(base)
        if force or not _exists(app):
            t0 = time.monotonic()
            _build_app(app, atag, base, project, seconds)
            seconds["app"] = time.monotonic() - t0
            built.append(app)
    seconds["total"] = time.monotonic() - t_all
    return BuildResult(base=base, app=app, built=tuple(built), seconds=seconds)


# --- what sessions use --------------------------------------------------------------------------


def service_image(project: Path = PROJECT) -> str:
    """The app image for the current sources (`HARNESS_SERVICE_IMAGE` overrides).

    Without a source checkout (an installed harness testing someone else's service image), the
    newest app image this module built.
    """
    if os.environ.get("HARNESS_SERVICE_IMAGE"):
        return os.environ["HARNESS_SERVICE_IMAGE"]
    if (project / "pyproject.toml").is_file():
        return f"{APP_REPO}:{app_tag(project=project)}"
    apps = [i for i in list_images() if i["kind"] == "app"]
    if not apps:
        raise ImagesMissing(f"no service image on this engine; {_HOW_TO_BUILD}")
    return apps[0]["name"]


def redis_image() -> str:
    """A local `redis` image if there is one (`HARNESS_REDIS_IMAGE` overrides), else the base image.

    Run either with `redis-server --protected-mode no`: without a password Redis refuses clients
    that are not on loopback, and in a container every client is.
    """
    if os.environ.get("HARNESS_REDIS_IMAGE"):
        return os.environ["HARNESS_REDIS_IMAGE"]
    out = subprocess.run(
        ["docker", "images", "redis", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True
    ).stdout.split()
    local = [name for name in out if not name.endswith(":<none>")]
    if local:
        return "redis:latest" if "redis:latest" in local else local[0]
    return f"{BASE_REPO}:{base_tag()}"


def forbid_pulls() -> Callable[[], None]:
    """Make every docker-SDK pull raise `PullForbidden`; returns a function that undoes it.

    With no registry a pull does not fail fast: dockerd tries Docker Hub and the test hangs or
    dies with a network error that says nothing about the missing image. testcontainers pulls
    whenever `images.get()` raises `ImageNotFound` (also for its Ryuk image), so patch both
    the high-level `ImageCollection.pull` and the low-level `ImageApiMixin.pull`.
    """
    from docker.api.image import ImageApiMixin
    from docker.models.images import ImageCollection

    originals = [(ImageCollection, ImageCollection.pull), (ImageApiMixin, ImageApiMixin.pull)]

    def refuse(self: object, repository: str, tag: str | None = None, *args: object, **kwargs: object) -> None:
        name = f"{repository}:{tag}" if tag else repository
        raise PullForbidden(
            f"refusing to pull {name}: this session never pulls (no registry). Build images with "
            f"`{BUILD_COMMAND}` and use names from harness.backends.docker.images.service_image()/redis_image(); "
            "set TESTCONTAINERS_RYUK_DISABLED=true so testcontainers does not pull its Ryuk image"
        )

    for cls, _ in originals:
        cls.pull = refuse  # type: ignore[method-assign]

    def restore() -> None:
        for cls, original in originals:
            cls.pull = original  # type: ignore[method-assign]

    return restore


def require_images(names: Iterable[str], client: DockerClient | None = None) -> None:
    """Fail fast, before any container starts, when an image is not on the engine.

    Uses the docker SDK (the client testcontainers uses, so the same DOCKER_HOST) and
    `images.get`, which never pulls.
    """
    import docker
    from docker.errors import ImageNotFound

    client = client or docker.from_env()
    missing = []
    for name in names:
        try:
            client.images.get(name)
        except ImageNotFound:
            missing.append(name)
    if missing:
        raise ImagesMissing(f"images missing on this Docker engine: {', '.join(missing)}; {_HOW_TO_BUILD}")


# --- list / prune -------------------------------------------------------------------------------


def list_images() -> list[dict[str, str]]:
    """Images labelled harness.managed, newest first within each kind: name, kind, id, created, size."""
    rows = []
    for kind in ("app", "base"):
        filters = ["--filter", f"label={KIND}={kind}", "--filter", f"label={LABEL_MANAGED}=true"]
        out = _run(["docker", "images", *filters, "--format", "{{json .}}"], step="docker images")
        found = sorted((json.loads(line) for line in out.splitlines() if line.strip()), key=lambda r: r["CreatedAt"])
        for r in reversed(found):
            name = f"{r['Repository']}:{r['Tag']}"
            rows.append({"name": name, "kind": kind, "id": r["ID"], "created": r["CreatedAt"], "size": r["Size"]})
    return rows


def prune() -> list[str]:
    """Remove leftover build containers and every managed image but the newest app and base."""
    removed = []
    out = _run(["docker", "ps", "-aq", "--filter", f"label={KIND}=build"], step="docker ps")
    for cid in out.split():
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        removed.append(f"container {cid}")
    for kind in ("app", "base"):  # apps first: they are the children of bases
        for image in [i for i in list_images() if i["kind"] == kind][1:]:
            target = image["id"] if image["name"].endswith("<none>") else image["name"]
            if subprocess.run(["docker", "rmi", target], capture_output=True).returncode == 0:
                removed.append(target)
    return removed


# --- command line -------------------------------------------------------------------------------
