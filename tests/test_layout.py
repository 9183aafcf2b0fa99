"""The house rules of the code layout (docs/ARCHITECTURE.md), checked so that they stay true.

Pure reading of the source tree and one fresh interpreter; no Redis, no processes.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "rq_recovery", "shap_service")
#: A module longer than this says why at the top of its docstring ("Long on purpose").
MAX_LINES = 520
LONG_REASON = "Long on purpose"


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _public_definitions(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            names.add(node.name)
    return names


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then everything else."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def _dunder_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    return None


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_no_module_is_long_without_a_reason_at_its_top(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    if lines <= MAX_LINES:
        return
    top = (ast.get_docstring(ast.parse(path.read_text())) or "")[:600]
    assert LONG_REASON in top, f"{_rel(path)} has {lines} lines: split it, or say why at its top ({LONG_REASON!r})"


@pytest.mark.parametrize(
    "path", [p for p in _modules() if p.name != "__main__.py" and not p.name.startswith("test_")], ids=_rel
)
def test_every_module_lists_its_public_names_in_a_sorted_complete_dunder_all(path: Path) -> None:
    tree = ast.parse(path.read_text())
    listed = _dunder_all(tree)
    public = _public_definitions(tree)
    if listed is None:
        assert not public or path.name == "__init__.py", f"{_rel(path)} defines {sorted(public)} but has no __all__"
        return
    assert listed == sorted(listed, key=_isort_key), f"{_rel(path)}: __all__ is not sorted (ruff's RUF022 sorts it)"
    assert len(set(listed)) == len(listed), f"{_rel(path)}: __all__ repeats a name"
    assert public <= set(listed), f"{_rel(path)}: public names missing from __all__: {sorted(public - set(listed))}"


def _imports_of(path: Path) -> list[tuple[str, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            found += [(node.module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize(
    "path",
    sorted(
        [
            *(REPO / "tests").glob("*.py"),
            *(REPO / "scenarios").glob("*.py"),
            *(REPO / "fixtures").glob("*.py"),
            *(REPO / "harness" / "run" / "scenarios").glob("test_*.py"),
        ]
    ),
    ids=_rel,
)
def test_tests_import_no_private_names(path: Path) -> None:
    private = [f"{m}.{n}" for m, n in _imports_of(path) if n.startswith("_") and not n.endswith("__")]
    assert not private, f"{_rel(path)} imports private names: {private}"


def test_neither_the_service_nor_the_recovery_layer_imports_the_harness() -> None:
    offenders = [
        f"{_rel(p)}: {m}"
        for pkg in ("rq_recovery", "shap_service")
        for p in (REPO / pkg).rglob("*.py")
        for m, _ in _imports_of(p)
        if m.split(".")[0] == "harness"
    ]
    assert not offenders, offenders


def test_the_pytest_plugin_loads_nothing_heavy() -> None:
    """Every pytest session of a project with the package installed imports the plugin."""
    heavy = ["redis", "requests", "rq", "psutil", "jinja2", "pydantic", "harness.backends.local.stack", "harness.run"]
    code = (
        "import sys, harness.pytest_plugin, harness.pytest_plugin.fixtures\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "", f"importing the plugin loaded: {out.stdout.strip()}"
