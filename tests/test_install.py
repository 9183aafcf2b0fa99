"""The harness installed like any tool: the project's wheel (not an editable install) in a fresh
venv, used from a directory that is not this checkout.

The venv gets the wheel alone; its dependencies come from this venv's site-packages through a
`.pth` line, so the test needs no network and takes seconds, while every file of the harness,
the service and the fix is the wheel's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from harness.backends.docker.images import copy_project

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("installed")
    src = copy_project(REPO, root / "src")  # what the wheel is built from; the checkout stays untouched
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(src)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = (root / "dist").glob("shap_chaos-*.whl")
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    purelib = Path(
        subprocess.run(
            [str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The new venv's own pip (its scripts must run its own interpreter), without the dependencies.
    subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (purelib / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env


def _run(venv: Path, *argv: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """A command of the installed venv, with no PYTHONPATH that could point back into a checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_wheel_holds_the_harness_and_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    code = "import harness, harness.run.scenarios as s, shap_service; print(harness.__file__, s.__file__)"
    out = _run(venv, "python", "-c", code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(REPO) not in out.stdout and str(venv) in out.stdout, out.stdout
    shipped = _run(venv, "python", "-c", "from harness.targets import shipped_targets as s; print(*s())", cwd=tmp_path)
    assert shipped.stdout.split() == ["plain-rq", "shap-service"], shipped.stderr  # target files are package data


def test_harness_run_and_report_work_from_any_directory(venv: Path, tmp_path: Path) -> None:
    out = _run(venv, "harness", "run", "--scenario", "kill-worker", "--report-dir", "out", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert str(venv) in out.stdout  # the scenarios the package ships, not a checkout's
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [(s["name"], s["verdict"]) for s in summary["scenarios"]] == [("kill-worker", "pass")]
    (tmp_path / "out" / "index.html").unlink()
    again = _run(venv, "harness", "report", "out", cwd=tmp_path, timeout=60)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "out" / "index.html").is_file()


def test_the_plugin_is_silent_in_a_project_that_runs_no_scenario(venv: Path, tmp_path: Path) -> None:
    (tmp_path / "test_other.py").write_text("def test_other():\n    assert 1 + 1 == 2\n")
    out = _run(venv, "python", "-m", "pytest", "-p", "no:cacheprovider", cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "chaos:" not in out.stdout, out.stdout  # no header, no summary, no report line
    assert not (tmp_path / "reports").exists()  # nothing written either
    options = _run(venv, "python", "-m", "pytest", "--help", cwd=tmp_path, timeout=60)
    assert "--chaos-seed" in options.stdout  # loaded, only quiet
