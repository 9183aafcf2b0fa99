#!/usr/bin/env bash
# Make a Docker engine answer and build the harness's images offline (no registry needed).
# Idempotent: installs docker.io + debootstrap only if missing, starts dockerd only if no
# engine answers, and the image build reuses images whose content-hash tags exist (warm: <1 s).
#
#   scripts/ci_docker.sh [DOCKERD_LOG]      default log: /tmp/dockerd.log
#   PYTHON=/path/to/python scripts/ci_docker.sh   the interpreter with this project installed
#                                                  (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
LOG="${1:-/tmp/dockerd.log}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)

# 1. The engine and the base-image tool.
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  t=$(now)
  echo "ci_docker: installing ${missing[*]} ..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  echo "ci_docker: installed in $(since "$t") s"
fi

# 2. A running engine: reuse one that answers, else start dockerd in the background.
t=$(now)
if docker info >/dev/null 2>&1; then
  echo "ci_docker: a Docker engine already answers"
else
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl start docker || true
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "ci_docker: starting dockerd (log: $LOG)"
    $SUDO setsid nohup dockerd >"$LOG" 2>&1 < /dev/null &
  fi
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "ci_docker: no Docker engine after 60 s; last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2 || true
    exit 1
  fi
  echo "ci_docker: engine ready in $(since "$t") s"
fi

# 3. The images (base: debootstrap + docker import; app: host wheels + docker commit).
t=$(now)
$SUDO "$PYTHON" -m harness images build --offline
echo "ci_docker: images ready in $(since "$t") s (total $(since "$T0") s)"
