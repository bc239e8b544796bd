#!/usr/bin/env bash
# The replica-harness soak: three replicas, a long run from a random seed (printed), with the
# services the harness needs. HARNESS_SOAK_STEPS sets its length (default 5000).
set -euo pipefail
source "$(dirname "$0")/services.sh"
trap stop_started EXIT
ensure_postgres
cd "$ROOT"
cargo test --release -p harness --test replicas -- --ignored --nocapture
