#!/usr/bin/env bash
# The fault test (scripts/fault_test.py) with what it needs: the venv (websockets, moto, boto3)
# and the PostgreSQL server binaries; it starts its own PostgreSQL, moto and make dev REPLICAS=3.
# FAULT_SEED (default 1, the CI seed; 0 for a random one) and FAULT_SECONDS (default 40).
set -euo pipefail
source "$(dirname "$0")/services.sh"
ensure_venv
cd "$ROOT"
seed="${FAULT_SEED:-1}"
args=(--seconds "${FAULT_SECONDS:-40}")
[ "$seed" = 0 ] || args+=(--seed "$seed")
"$VENV/bin/python" scripts/fault_test.py "${args[@]}"
