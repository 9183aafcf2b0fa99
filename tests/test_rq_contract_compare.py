"""tests/rq_contract/compare.py: what counts as a difference between the stock and the fix run of RQ's suite."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("rq_contract_compare", Path(__file__).parent / "rq_contract/compare.py")
assert _spec and _spec.loader
compare = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = compare
_spec.loader.exec_module(compare)

CASE = {
    "passed": "",
    "failed": '<failure message="AssertionError: boom&#10;more">tb</failure>',
    "error": '<error message="teardown">tb</error>',
    "skipped": '<skipped type="pytest.skip" message="nope" />',
}


def junit(path: Path, mode: str, tests: dict[str, str], version: str = "3.0.0") -> Path:
    """A pytest-style (xunit2) report: tests maps 'module.Class.name' -> status."""
    cases = "".join(
        f'<testcase classname="{key.rsplit(".", 1)[0]}" name="{key.rsplit(".", 1)[1]}">{CASE[status]}</testcase>'
        for key, status in tests.items()
    )
    props = f'<property name="rq_contract_mode" value="{mode}"/><property name="rq_version" value="{version}"/>'
    path.write_text(
        f'<testsuites><testsuite name="pytest"><properties>{props}</properties>{cases}</testsuite></testsuites>'
    )
    return path


def toml(path: Path, *entries: tuple[str, str]) -> Path:
    body = ",\n".join(f'  {{ test = "{t}", reason = "{r}" }}' for t, r in entries)
    path.write_text(f"# comment\ndifferences = [\n{body}\n]\n")
    return path


A, B, C = "tests.test_worker.TestWorker.test_a", "tests.test_worker.TestWorker.test_b", "tests.test_cli.test_c[1.5]"


def run(tmp_path: Path, stock: dict[str, str], fix: dict[str, str], *entries: tuple[str, str]) -> int:
    s, f = junit(tmp_path / "stock.xml", "stock", stock), junit(tmp_path / "fix.xml", "fix", fix)
    return compare.main([str(s), str(f), "--deliberate", str(toml(tmp_path / "d.toml", *entries))])


def test_identical_runs_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, {A: "passed", B: "skipped"}, {A: "passed", B: "skipped"}) == 0
    out = capsys.readouterr().out
    assert "stock: 1 passed, 0 failed, 0 errors, 1 skipped (2)" in out
    assert "OK: 0 unexpected, 0 stale" in out


@pytest.mark.parametrize("fix_status", ["failed", "error", "skipped", "missing"])
def test_passed_stock_not_fix_is_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fix_status: str
) -> None:
    fix = {B: "passed"} if fix_status == "missing" else {A: fix_status, B: "passed"}
    assert run(tmp_path, {A: "passed", B: "passed"}, fix) == 1
    out = capsys.readouterr().out
    assert f"UNEXPECTED: passed stock, not with the fix: 1\n  {A}  {fix_status}" in out


def test_failure_message_is_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, {A: "passed"}, {A: "failed"}) == 1
    assert f"{A}  failed AssertionError: boom\n" in capsys.readouterr().out


def test_failed_stock_is_informational_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, {A: "failed", B: "passed"}, {A: "failed", B: "passed"}) == 0
    assert f"failed stock too (informational, not a difference): 1\n  {A}" in capsys.readouterr().out


def test_deliberate_difference_by_node_id_is_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = [
        ("tests/test_worker.py::TestWorker::test_a", "the fix requeues"),
        ("tests/test_cli.py::test_c[1.5]", "x"),
    ]
    assert run(tmp_path, {A: "passed", C: "passed"}, {A: "failed", C: "skipped"}, *entries) == 0
    out = capsys.readouterr().out
    assert f"deliberate differences that occurred: 2\n  {C}  x\n  {A}  the fix requeues" in out


def test_stale_entry_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, {A: "passed", B: "failed"}, {A: "passed", B: "failed"}, (A, "gone"), (B, "failed stock")) == 1
    out = capsys.readouterr().out
    assert f"STALE deliberate entries: no such difference occurred: 2\n  {A}  gone\n  {B}  failed stock" in out


def test_reports_from_the_wrong_mode_are_refused(tmp_path: Path) -> None:
    s, f = junit(tmp_path / "s.xml", "stock", {A: "passed"}), junit(tmp_path / "f.xml", "stock", {A: "passed"})
    assert compare.main([str(s), str(f), "--deliberate", str(toml(tmp_path / "d.toml"))]) == 2
    f = junit(tmp_path / "f.xml", "fix", {A: "passed"}, version="2.0")
    assert compare.main([str(s), str(f), "--deliberate", str(toml(tmp_path / "d.toml"))]) == 2


def test_bad_deliberate_entries_are_refused(tmp_path: Path) -> None:
    (tmp_path / "d.toml").write_text('differences = [{ test = "tests/test_x.py::t" }]\n')
    with pytest.raises(ValueError, match="needs a test and a reason"):
        compare.load_deliberate(tmp_path / "d.toml")
    toml(tmp_path / "d.toml", (A, "r"), ("tests/test_worker.py::TestWorker::test_a", "r"))
    with pytest.raises(ValueError, match="listed twice"):
        compare.load_deliberate(tmp_path / "d.toml")


def test_single_report_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.main([str(junit(tmp_path / "s.xml", "stock", {A: "passed", B: "skipped"}))]) == 0
    assert compare.main([str(junit(tmp_path / "s.xml", "stock", {A: "passed", B: "error"}))]) == 1
    assert f"error: {B}  teardown" in capsys.readouterr().out


def test_shipped_list_parses() -> None:
    assert isinstance(compare.load_deliberate(compare.DELIBERATE), dict)


def test_a_difference_that_passes_every_rerun_alone_is_flaky_not_unexpected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RQ's own suite has timing-bound tests (a worker must be gone 0.75 s after a command); one
    that failed once with the fix and passed each of its reruns alone is reported, not counted."""
    s = junit(tmp_path / "stock.xml", "stock", {A: "passed", B: "passed"})
    f = junit(tmp_path / "fix.xml", "fix", {A: "failed", B: "passed"})
    reruns = [str(junit(tmp_path / f"rerun{i}.xml", "fix", {A: "passed"})) for i in range(3)]
    d = str(toml(tmp_path / "d.toml"))
    assert compare.main([str(s), str(f), "--deliberate", d, *(x for r in reruns for x in ("--rerun", r))]) == 0
    out = capsys.readouterr().out
    assert f"FLAKY: differed once, then passed 3 of 3 reruns alone: 1\n  {A}" in out
    assert "OK: 0 unexpected, 0 stale, 1 flaky" in out


def test_a_difference_that_fails_or_is_missing_in_any_rerun_stays_unexpected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = junit(tmp_path / "stock.xml", "stock", {A: "passed", B: "passed"})
    f = junit(tmp_path / "fix.xml", "fix", {A: "failed", B: "failed"})
    r1 = junit(tmp_path / "r1.xml", "fix", {A: "passed", B: "passed"})
    r2 = junit(tmp_path / "r2.xml", "fix", {A: "failed", B: "passed"})
    r3 = junit(tmp_path / "r3.xml", "fix", {B: "passed"})
    argv = [str(s), str(f), "--deliberate", str(toml(tmp_path / "d.toml"))]
    assert compare.main([*argv, "--rerun", str(r1), "--rerun", str(r2)]) == 1
    assert f"UNEXPECTED: passed stock, not with the fix: 1\n  {A}" in capsys.readouterr().out
    assert compare.main([*argv, "--rerun", str(r1), "--rerun", str(r3)]) == 1
    assert f"UNEXPECTED: passed stock, not with the fix: 1\n  {A}" in capsys.readouterr().out


def test_reruns_must_come_from_the_fix_mode(tmp_path: Path) -> None:
    s = junit(tmp_path / "stock.xml", "stock", {A: "passed"})
    f = junit(tmp_path / "fix.xml", "fix", {A: "failed"})
    r = junit(tmp_path / "r.xml", "stock", {A: "passed"})
    assert compare.main([str(s), str(f), "--deliberate", str(toml(tmp_path / "d.toml")), "--rerun", str(r)]) == 2


def test_the_unexpected_differences_are_listed_as_node_ids_to_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = junit(tmp_path / "stock.xml", "stock", {A: "passed", B: "passed", C: "passed"})
    f = junit(tmp_path / "fix.xml", "fix", {A: "failed", B: "passed", C: "error"})
    argv = [str(s), str(f), "--deliberate", str(toml(tmp_path / "d.toml")), "--list-unexpected"]
    assert compare.main(argv) == 0
    assert capsys.readouterr().out.split() == [
        "tests/test_cli.py::test_c[1.5]",
        "tests/test_worker.py::TestWorker::test_a",
    ]
