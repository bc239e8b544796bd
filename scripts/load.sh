#!/usr/bin/env bash
# `make load`: the load benchmark (`bench load`, bench/src/load.rs) against `make dev REPLICAS=3`
# with release builds, on databases of its own; prints the table. LOAD_ARGS passes options to
# `bench load`, e.g. LOAD_ARGS="--seconds 30 --shapes 100x1 --scales 1,2".
set -euo pipefail
source "$(dirname "$0")/services.sh"
DEV_PID=""
stop_dev() {
    [ -z "$DEV_PID" ] || { kill -TERM -- "-$DEV_PID" 2>/dev/null; wait "$DEV_PID" 2>/dev/null || true; }
}
trap 'stop_dev; stop_started' EXIT
ensure_venv
ensure_postgres
ensure_moto
cd "$ROOT"
# Each binary alone, as cargo lambda watch builds each function (`cargo run --release --bin f`):
# built together, cargo would unify their features and the watch would build them all again.
log "building the functions, the gateway and the benchmark (release)"
for bin in api integrate realtime wsgateway; do
    cargo build --release --quiet --bin "$bin"
done
cargo build --release --quiet -p bench
ready="$DEV/load.ready"
rm -f "$ready"
# The functions as deployed: the template's COMPACT_AFTER default, not make dev's low one, and up
# to LOAD_CONCURRENCY (default 4) instances of each, as Lambda scales out.
DEV_RELEASE=1 DEV_IGNORE_CHANGES=1 DEV_CONCURRENCY="${LOAD_CONCURRENCY:-4}" REPLICAS="${REPLICAS:-3}" DEV_BASE_PORT="${LOAD_BASE_PORT:-9500}" DEV_DB_PREFIX=collab_load \
    DEV_READY_FILE="$ready" COMPACT_AFTER="${COMPACT_AFTER:-2000}" setsid bash scripts/dev.sh >"$DEV/load-dev.log" 2>&1 &
DEV_PID=$!
log "waiting for make dev (log: .dev/load-dev.log)"
wait_dev_ready "$ready" "$DEV_PID" "$DEV/load-dev.log" 900
# shellcheck disable=SC2086
target/release/bench load --ready "$ready" --database-url "$DATABASE_URL" ${LOAD_ARGS:-}
