#!/usr/bin/env bash
# RQ's own test suite, from the sdist of the installed rq version, run against the installed rq: stock, and with
# rq_recovery's worker classes swapped in for rq's (tests/rq_contract/plugin.py); then tests/rq_contract/compare.py.
#
#   scripts/rq_contract.sh [stock|fix|both] [extra pytest args]     (default: both)
#
# `fix` alone, without pytest args, compares against an existing stock.xml if there is one. RQ's tests hard-code Redis at
# 127.0.0.1:6379 (dbs 4..16), so each run gets a private network namespace (unshare -n, hence root) with its own
# redis-server. Env: PYTHON (.venv/bin/python), OUT (reports/out/rq-contract), RQ_CONTRACT_CACHE
# (.cache/rq-contract), RQ_CONTRACT_TIMEOUT (900 s for a whole run; each test gets 120 s), PYTHONPATH (searched
# before the repository's rq_recovery: a stand-in there wins).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
MODE=${1:-both}
[ $# -gt 0 ] && shift
case $MODE in stock | fix | both) ;; *) echo "usage: $0 [stock|fix|both] [pytest args]" >&2; exit 2 ;; esac

die() { echo "rq-contract: $*" >&2; exit 2; }
abs() { case $1 in /*) echo "$1" ;; *) echo "$REPO/$1" ;; esac; }
PYTHON=${PYTHON:-.venv/bin/python}
case $PYTHON in */*) ;; *) PYTHON=$(command -v "$PYTHON") || die "no $PYTHON on PATH" ;; esac
PYTHON=$(abs "$PYTHON") # not resolved: a venv's python is a symlink out of the venv
OUT=$(abs "${OUT:-reports/out/rq-contract}")
CACHE=$(abs "${RQ_CONTRACT_CACHE:-.cache/rq-contract}")
export RQ_CONTRACT_TIMEOUT=${RQ_CONTRACT_TIMEOUT:-900}

[ "$(id -u)" -eq 0 ] || die "needs root: each run gets a private network namespace (unshare -n) so that RQ's tests
  own 127.0.0.1:6379; run it as root (e.g. sudo -E make rq-contract)"
for tool in unshare timeout redis-server; do
  command -v "$tool" >/dev/null || die "needs $tool on PATH (redis-server: apt-get install redis-server, as .ci/run does)"
done
[ -x "$PYTHON" ] || die "no Python at $PYTHON (set PYTHON=, or make the venv first)"
VER=$("$PYTHON" -c 'import rq; print(rq.__version__)') || die "$PYTHON cannot import rq"
mkdir -p "$OUT" "$CACHE"

# The sdist has the tests (the wheel does not). It is kept as extracted; runs use copies of tests/ only, so the
# sdist's rq/ folder can never shadow the installed rq (the plugin checks that too).
SDIST=$CACHE/rq-$VER
if [ ! -d "$SDIST/tests" ]; then
  echo "rq-contract: downloading the sdist of rq $VER into $CACHE"
  tmp=$(mktemp -d "$CACHE/download.XXXXXX")
  "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --dest "$tmp" "rq==$VER"
  tar -xzf "$tmp/rq-$VER.tar.gz" -C "$tmp"
  [ -d "$tmp/rq-$VER/tests" ] || die "the rq $VER sdist has no tests/"
  rm -rf "$SDIST" && mv "$tmp/rq-$VER" "$SDIST" && rm -rf "$tmp"
fi

# Only two names for PYTHONPATH: the plugin, and the repository's rq_recovery (it may not be installed).
PYPATH=$CACHE/pythonpath
mkdir -p "$PYPATH"
ln -sfn "$REPO/tests/rq_contract/plugin.py" "$PYPATH/rq_contract_plugin.py"
ln -sfn "$REPO/rq_recovery" "$PYPATH/rq_recovery"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PYPATH
export PATH=$(dirname "$PYTHON"):$PATH # some tests run `rqworker`
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 PYTHON
unset RUN_SLOW_TESTS_TOO RUN_SSL_TESTS RQ_WORKER_CLASS

# Runs inside the namespace: $1 run dir, $2 report, $3 redis log, then pytest args (what to run, and options). RQ's own pyproject.toml is
# the ini (explicit -c: the repository's [tool.pytest.ini_options] must not apply); no third-party plugin autoloads.
# shellcheck disable=SC2016
NS_SCRIPT='
set -u
run=$1 xml=$2 log=$3
shift 3
# Bring up loopback: ip(8) if there is one, else the same ioctl from Python (SIOCSIFFLAGS: IFF_UP | IFF_LOOPBACK).
ip link set lo up 2>/dev/null || "$PYTHON" -c "import fcntl, socket, struct
fcntl.ioctl(socket.socket(), 0x8914, struct.pack(\"16sH14x\", b\"lo\", 0x9))" || exit 3
redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$log" 2>&1 &
redis=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
(exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null || { echo "rq-contract: redis-server did not start: $log" >&2; exit 3; }
cd "$run"
rc=0
timeout --kill-after=10 "$RQ_CONTRACT_TIMEOUT" "$PYTHON" -m pytest -c pyproject.toml --rootdir . \
  -p no:harness -p no:cacheprovider -p pytest_timeout -p rq_contract_plugin -o timeout=120 \
  --junitxml "$xml" -ra "$@" || rc=$?
kill "$redis" 2>/dev/null; wait "$redis" 2>/dev/null
# Whatever the run left behind (e.g. a pool worker) is in this namespace, which only this run uses: end it.
ns=$(readlink /proc/$$/ns/net)
for d in /proc/[0-9]*; do
  pid=${d#/proc/}
  [ "$pid" != $$ ] && [ "$(readlink "$d/ns/net" 2>/dev/null)" = "$ns" ] || continue
  echo "rq-contract: killing leftover process $pid: $(tr "\0" " " <"$d/cmdline" 2>/dev/null)" >&2
  kill -KILL "$pid" 2>/dev/null
done
exit $rc
'

run_suite() { # $1 = stock|fix, $2 = the run's name (its report: $OUT/<name>.xml); the rest: pytest args.
  local mode=$1 name=$2 rc=0 t0=$SECONDS
  shift 2
  local run=$CACHE/run-$name xml=$OUT/$name.xml
  rm -rf "$run" "$xml" && mkdir -p "$run"
  cp -a "$SDIST/tests" "$SDIST/pyproject.toml" "$run/"
  echo "rq-contract: RQ $VER's test suite, RQ_CONTRACT_WORKER=$mode (report: $xml)"
  RQ_CONTRACT_WORKER=$mode unshare -n bash -c "$NS_SCRIPT" rq-contract "$run" "$xml" "$OUT/$name.redis.log" "$@" ||
    rc=$?
  echo "rq-contract: $name run took $((SECONDS - t0)) s (pytest exit $rc)"
  case $rc in
    0 | 1) ;;
    124 | 137) echo "rq-contract: WARNING: pytest ran past RQ_CONTRACT_TIMEOUT=${RQ_CONTRACT_TIMEOUT}s and was killed" >&2 ;;
    *) die "the $name run failed (exit $rc)" ;;
  esac
  [ -s "$xml" ] || die "the $name run wrote no report ($xml)"
}

COMPARE=("$PYTHON" "$REPO/tests/rq_contract/compare.py")
RERUNS=3        # times each unexpected difference is rerun alone with the fix (compare.py: FLAKY)
MAX_RERUN=5     # more unexpected differences than this are not timing: no reruns, they fail as they are

compare_runs() { # stock.xml against fix.xml; unexpected differences get RERUNS reruns alone first
  local rc=0 again=() reruns=() i
  "${COMPARE[@]}" "$OUT/stock.xml" "$OUT/fix.xml" || rc=$?
  [ "$rc" -eq 1 ] || return "$rc"
  mapfile -t again < <("${COMPARE[@]}" "$OUT/stock.xml" "$OUT/fix.xml" --list-unexpected)
  if [ "${#again[@]}" -eq 0 ] || [ "${#again[@]}" -gt "$MAX_RERUN" ]; then return 1; fi
  echo "rq-contract: rerunning ${#again[@]} unexpected difference(s) alone with the fix, $RERUNS times"
  for i in $(seq "$RERUNS"); do
    run_suite fix "fix-rerun$i" "${again[@]}"
    reruns+=(--rerun "$OUT/fix-rerun$i.xml")
  done
  "${COMPARE[@]}" "$OUT/stock.xml" "$OUT/fix.xml" "${reruns[@]}"
}

rm -f "$OUT"/fix-rerun*.xml
case $MODE in
  stock) run_suite stock stock tests "$@" && "${COMPARE[@]}" "$OUT/stock.xml" ;;
  fix)
    run_suite fix fix tests "$@"
    if [ $# -eq 0 ] && [ -s "$OUT/stock.xml" ]; then compare_runs; else "${COMPARE[@]}" "$OUT/fix.xml"; fi
    ;;
  both) run_suite stock stock tests "$@" && run_suite fix fix tests "$@" && compare_runs ;;
esac
