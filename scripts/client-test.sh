#!/usr/bin/env bash
# The editor client's tests (clients/js): builds the WebAssembly replica and the TypeScript
# package, type-checks it, runs its unit tests, then its tests against the real local stack:
# PostgreSQL, moto, the functions under `cargo lambda watch` and the local WebSocket gateway,
# started here the way `make dev` starts them. CLIENT_SEED replays one run of the random tests.
set -euo pipefail
source "$(dirname "$0")/services.sh"
trap stop_started EXIT
ensure_venv
ensure_postgres
ensure_moto
cd "$ROOT/clients/js"
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run --silent build
log "unit tests"
npm run --silent test:unit

cd "$ROOT"
PORT="$(free_port)"
GW_PORT="$(free_port)"
export AUTH_LOCAL_SECRET="client-test-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
TOPIC="$(sns_topic collab-ops)"
DB="collab_client_$$"
DB_URL="$(migrated_db "$(fresh_db "$DB")")"
cleanup() {
    for pid in "${WATCH_PID:-}" "${GW_PID:-}"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    drop_db "$DB"
    stop_started
}
trap cleanup EXIT

log "functions on 127.0.0.1:$PORT, WebSocket gateway on 127.0.0.1:$GW_PORT"
env DATABASE_URL="$DB_URL" SNS_TOPIC="$TOPIC" REPLICA_ID=1 SSN_ID=1 RUST_LOG=info \
    WS_MANAGEMENT_ENDPOINT="http://127.0.0.1:$GW_PORT/dev" \
    cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$PORT" >"$DEV/client-watch.log" 2>&1 &
WATCH_PID=$!
API="http://127.0.0.1:$PORT/lambda-url/api"
TOKEN="$(dev_token alice 3600)"
wait_api "$WATCH_PID" "$DEV/client-watch.log"
cargo build --quiet -p wsgateway
target/debug/wsgateway --listen "127.0.0.1:$GW_PORT" --stage dev \
    --invoke "http://127.0.0.1:$PORT/2015-03-31/functions/realtime/invocations" >"$DEV/client-gateway.log" 2>&1 &
GW_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$GW_PORT") 2>/dev/null && break; sleep 0.1; done

log "client tests against the local stack"
cd "$ROOT/clients/js"
# CLIENT_TEST_ARGS: extra node --test options (e.g. --test-name-pattern=offline).
API_URL="$API" WS_URL="ws://127.0.0.1:$GW_PORT/" \
    node --experimental-websocket --test --test-concurrency=1 ${CLIENT_TEST_ARGS:-} dist/test/*.test.js
