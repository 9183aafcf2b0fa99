#!/usr/bin/env bash
# Flake hunt: run the default local chaos suite (`harness run`) N times in a row, a new chaos
# seed each time, and stop at the first failure. After every run, nothing of it may remain
# (no process labelled with a harness run whose owner is gone). One line per run in OUT (TSV), a summary at the end.
#
#   scripts/repeat_suite.sh [N] [-- extra harness run arguments]     default N=10
#   OUT=/tmp/repeat.tsv scripts/repeat_suite.sh 10 -- --scenario kill-worker
#
# Exit 0 when all N passed, 1 at the first failing run (its report dir is printed).
set -uo pipefail
cd "$(dirname "$0")/.."
N="${1:-10}"
shift || true
[ "${1:-}" = "--" ] && shift
OUT="${OUT:-reports/out/repeat-$(date +%Y%m%d-%H%M%S).tsv}"
HARNESS="${HARNESS:-.venv/bin/harness}"
PY="$(dirname "$HARNESS")/python"
if ! [[ "$N" =~ ^[1-9][0-9]*$ ]]; then
  echo "repeat_suite: N must be a positive integer, got '$N'" >&2
  exit 2
fi
if [ ! -x "$HARNESS" ]; then
  echo "repeat_suite: $HARNESS not found; run 'make .venv/bin/harness' first (or set HARNESS=)" >&2
  exit 2
fi
mkdir -p reports/out "$(dirname "$OUT")"
printf 'run\trc\tseconds\tseed\tleftovers\treport\n' > "$OUT"

leftovers() {  # processes labelled with a harness run whose owner is gone
  "$PY" -c 'from harness.backends.local.processes import leftovers; print(len(leftovers()))'
}

passed=0
for i in $(seq "$N"); do
  seed=$(( (RANDOM << 15) | RANDOM ))
  dir="reports/out/repeat-$i-$seed"
  t0=$(date +%s.%N)
  "$HARNESS" run --seed "$seed" --report-dir "$dir" "$@" > "$dir.log" 2>&1
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  left=$(leftovers)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$rc" "$secs" "$seed" "$left" "$dir" >> "$OUT"
  echo "repeat_suite: run $i/$N rc=$rc ${secs}s seed=$seed leftovers=$left"
  if [ "$rc" -ne 0 ] || [ "$left" -ne 0 ]; then
    echo "repeat_suite: run $i failed after $passed in a row; report $dir/index.html, log $dir.log" >&2
    exit 1
  fi
  passed=$((passed + 1))
done
echo "repeat_suite: $passed/$N passed in a row (table: $OUT)"
