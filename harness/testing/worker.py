"""`python -m harness.testing.worker --fix NAME [shap-worker options]`: the service's worker
with one deliberately broken fix (see `broken_fixes`), for the detection-power tests.

It is this repository's `shap-worker` with another worker class, so the jobs, models and
settings are the service's own; only the recovery layer differs.
"""

from __future__ import annotations

import argparse
import sys

from harness.testing.broken_fixes import (
    BROKEN_FIXES,
    OUTSIDE_PROCESS,
    apply_fix_in_a_throwaway_interpreter,
    broken_worker,
)

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.testing.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fix", choices=BROKEN_FIXES, required=True, help="the deliberately broken fix to run")
    args, rest = parser.parse_known_args(argv)
    from rq import Worker

    from shap_service import worker

    if args.fix == OUTSIDE_PROCESS:
        apply_fix_in_a_throwaway_interpreter()
        return worker.main(rest, worker_class=Worker)
    return worker.main(rest, worker_class=broken_worker(args.fix, base=worker.ShapWorker))


if __name__ == "__main__":
    sys.exit(main())
