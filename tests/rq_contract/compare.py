"""Compare two runs of RQ's test suite (scripts/rq_contract.sh): stock rq, and rq_recovery's workers swapped in.

A test differs when it passed stock and did not pass with the fix (failed, errored, skipped or missing).
deliberate_differences.toml lists the expected ones; any other difference fails, and so does a listed one
that did not occur (a stale entry), so the list stays honest. Stdlib only.

RQ's suite has timing-bound tests (a pool worker must be gone 0.75 s after a shutdown command, on a loaded
2-core machine). So an unexpected difference is rerun alone with the fix, several times (`--rerun`, one
report per rerun): one that passed every rerun is reported as FLAKY and does not fail the comparison; one
that failed or was missing in any rerun stays unexpected.

    compare.py STOCK.xml FIX.xml [--deliberate TOML] [--rerun XML ...]   compare (exit 1: unexpected or
                                                                         stale; 2: bad input)
    compare.py STOCK.xml FIX.xml --list-unexpected                       node ids of the unexpected ones
    compare.py REPORT.xml                                                counts of one run (exit 1 if anything
                                                                         failed)
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

DELIBERATE = Path(__file__).with_name("deliberate_differences.toml")
RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
STATUS_OF = {"failure": "failed", "error": "error", "skipped": "skipped"}


def load_junit(path: Path) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Per test (junit classname + '.' + name): (status, first line of the message); and the suite properties."""
    root = ET.parse(path).getroot()
    props = {p.get("name", ""): p.get("value", "") for p in root.iterfind(".//testsuite/properties/property")}
    props |= {p.get("name", ""): p.get("value", "") for p in root.iterfind("properties/property")}
    results: dict[str, tuple[str, str]] = {}
    for case in root.iter("testcase"):
        key = f"{case.get('classname')}.{case.get('name')}"
        status, message = "passed", ""
        for child in case:
            tag = STATUS_OF.get(child.tag)
            if tag and RANK[tag] > RANK[status]:
                status, message = tag, (child.get("message") or "").strip().split("\n", 1)[0][:160]
        if key not in results or RANK[status] > RANK[results[key][0]]:  # reported twice: keep the worst
            results[key] = (status, message)
    return results, props


def node_key(test: str) -> str:
    """Node id ``tests/test_x.py::Class::test`` or junit ``tests.test_x.Class.test`` -> the junit form."""
    if "::" not in test:
        return test
    path, *rest = test.split("::")
    return ".".join([path.removesuffix(".py").replace("/", "."), *rest])


def node_id(key: str) -> str:
    """The junit form ``tests.test_x.Class.test[p]`` -> the node id ``tests/test_x.py::Class::test[p]``
    (module names start lower-case, class names upper-case, as in RQ's suite)."""
    base, bracket, params = key.partition("[")
    *owners, name = base.split(".")
    path = []
    while owners and owners[0][:1].islower():
        path.append(owners.pop(0))
    return "/".join(path) + ".py::" + "::".join([*owners, name]) + bracket + params


def load_deliberate(path: Path) -> dict[str, str]:
    """Test key -> reason; every entry needs both, and once."""
    out: dict[str, str] = {}
    for entry in tomllib.loads(path.read_text()).get("differences", []):
        if not (isinstance(entry, dict) and entry.get("test") and entry.get("reason")):
            raise ValueError(f"{path}: every entry needs a test and a reason: {entry!r}")
        key = node_key(entry["test"])
        if key in out:
            raise ValueError(f"{path}: {entry['test']} is listed twice")
        out[key] = entry["reason"]
    return out


def compare(
    stock: dict[str, str], fix: dict[str, str], deliberate: dict[str, str], reruns: list[dict[str, str]] | None = None
) -> dict[str, list[str]]:
    """Pure comparison of test key -> status maps; `reruns` are the fix's reruns of the differences."""
    differs = sorted(k for k, s in stock.items() if s == "passed" and fix.get(k) != "passed")
    reruns = reruns or []
    flaky = [k for k in differs if k not in deliberate and reruns and all(r.get(k) == "passed" for r in reruns)]
    return {
        "unexpected": [k for k in differs if k not in deliberate and k not in flaky],
        "flaky": flaky,
        "deliberate": [k for k in differs if k in deliberate],
        "stale": sorted(set(deliberate) - set(differs)),
        "failed_stock": sorted(k for k, s in stock.items() if RANK[s] >= RANK["failed"]),
        "passed_only_fix": sorted(k for k, s in fix.items() if s == "passed" and stock.get(k) != "passed"),
    }


def counts(results: dict[str, tuple[str, str]]) -> str:
    c = Counter(status for status, _ in results.values())
    return f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped ({len(results)})"


def _check_props(name: str, props: dict[str, str], mode: str) -> str | None:
    if props.get("rq_contract_mode") != mode:
        return f"{name} was not run with RQ_CONTRACT_WORKER={mode} (rq_contract_mode={props.get('rq_contract_mode')})"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stock", type=Path)
    parser.add_argument("fix", type=Path, nargs="?")
    parser.add_argument("--deliberate", type=Path, default=DELIBERATE)
    parser.add_argument("--rerun", type=Path, action="append", default=[], help="a fix-mode rerun of the differences")
    parser.add_argument("--list-unexpected", action="store_true", help="print their node ids, one per line")
    args = parser.parse_args(argv)
    stock, stock_props = load_junit(args.stock)
    if args.fix is None:
        failed = [k for k, (s, _) in stock.items() if RANK[s] >= RANK["failed"]]
        print(f"{args.stock.name} ({stock_props.get('rq_contract_mode', '?')}): {counts(stock)}")
        for key in failed:
            print(f"  {stock[key][0]}: {key}  {stock[key][1]}")
        return 1 if failed else 0
    fix, fix_props = load_junit(args.fix)
    problems = [p for p in (_check_props("stock", stock_props, "stock"), _check_props("fix", fix_props, "fix")) if p]
    reruns = []
    for path in args.rerun:
        rerun, rerun_props = load_junit(path)
        problems += [p for p in [_check_props(f"rerun {path.name}", rerun_props, "fix")] if p]
        reruns.append({k: s for k, (s, _) in rerun.items()})
    if stock_props.get("rq_version") != fix_props.get("rq_version"):
        problems.append(f"rq versions differ: {stock_props.get('rq_version')} vs {fix_props.get('rq_version')}")
    try:
        deliberate = load_deliberate(args.deliberate)
    except (OSError, ValueError) as exc:
        problems.append(str(exc))
    if problems:
        print("rq-contract: cannot compare:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    result = compare({k: s for k, (s, _) in stock.items()}, {k: s for k, (s, _) in fix.items()}, deliberate, reruns)
    if args.list_unexpected:
        print("\n".join(sorted(node_id(k) for k in result["unexpected"])))
        return 0
    swapped = [name for name in fix_props.get("rq_contract_swapped", "").split(",") if name]
    print(f"stock: {counts(stock)}\nfix:   {counts(fix)}  ({len(swapped)} names swapped)")
    sections = [
        ("failed stock too (informational, not a difference)", "failed_stock", lambda k: stock[k][1]),
        ("passed only with the fix (informational)", "passed_only_fix", lambda k: ""),
        ("deliberate differences that occurred", "deliberate", lambda k: deliberate[k]),
        (
            f"FLAKY: differed once, then passed {len(reruns)} of {len(reruns)} reruns alone",
            "flaky",
            lambda k: " ".join(fix.get(k, ("missing", ""))),
        ),
        ("UNEXPECTED: passed stock, not with the fix", "unexpected", lambda k: " ".join(fix.get(k, ("missing", "")))),
        ("STALE deliberate entries: no such difference occurred", "stale", lambda k: deliberate[k]),
    ]
    for title, name, detail in sections:
        if result[name]:
            print(f"{title}: {len(result[name])}")
            for key in result[name]:
                print(f"  {key}  {detail(key)}".rstrip())
    bad = len(result["unexpected"]) + len(result["stale"])
    print(
        f"rq-contract: {'FAIL' if bad else 'OK'}: {len(result['unexpected'])} unexpected, {len(result['stale'])} stale"
        + (f", {len(result['flaky'])} flaky" if reruns else "")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
