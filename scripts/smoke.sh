#!/usr/bin/env bash
# The smoke test: the functions under `cargo lambda watch` on 127.0.0.1 with a real PostgreSQL
# and moto. Creates a document over HTTP, edits it from two sessions (one CRDT-native, one
# index-based against a stale base), reads the merged text back, and invokes `integrate` with a
# fixture through `cargo lambda invoke`.
set -euo pipefail
source "$(dirname "$0")/services.sh"
trap stop_started EXIT
ensure_venv
ensure_postgres
ensure_moto
cd "$ROOT"

PORT="$(free_port)"
export AUTH_LOCAL_SECRET="smoke-$(date +%s)-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
TOPIC="$(sns_topic collab-ops)"
DB="collab_smoke_$$"
SMOKE_DB_URL="$(migrated_db "$(fresh_db "$DB")")"
cleanup() {
    [ -n "${WATCH_PID:-}" ] && kill "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null
    drop_db "$DB"
    stop_started
}
trap cleanup EXIT

log "cargo lambda watch on 127.0.0.1:$PORT (topic $TOPIC)"
env DATABASE_URL="$SMOKE_DB_URL" SNS_TOPIC="$TOPIC" REPLICA_ID=1 SSN_ID=1 RUST_LOG=info \
    cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$PORT" >"$DEV/smoke-watch.log" 2>&1 &
WATCH_PID=$!

API="http://127.0.0.1:$PORT/lambda-url/api"
TOKEN="$(dev_token alice 3600)"

wait_api "$WATCH_PID" "$DEV/smoke-watch.log"

DOC_JSON="$(api_call POST /documents '{"title":"smoke.rs","content":"fn main() {}\n"}')"
DOC="$(json "d['id']" <<<"$DOC_JSON")"
BASE="$(python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)['version']))" <<<"$DOC_JSON")"
log "created $DOC"

# Session 1: a CRDT-native client sends an RGA op of its own site.
S1="$(api_call POST "/documents/$DOC/sessions" | json "d['session']")"
api_call POST "/documents/$DOC/operations" \
    "{\"session\":$S1,\"ops\":[{\"type\":\"insert\",\"id\":{\"ssn\":1,\"sum\":1000,\"sid\":$S1,\"seq\":1},\"after\":null,\"text\":\"// smoke\\n\"}]}" >/dev/null
# Session 2: a simple client edits by index against the version it saw before session 1's op.
S2="$(api_call POST "/documents/$DOC/sessions" | json "d['session']")"
api_call POST "/documents/$DOC/edits" \
    "{\"session\":$S2,\"base\":$BASE,\"edits\":[{\"index\":11,\"delete\":0,\"insert\":\" println!(\\\"hi\\\"); \"}]}" >/dev/null
TEXT="$(api_call GET "/documents/$DOC" | json "d['text']")"
EXPECTED=$'// smoke\nfn main() { println!("hi"); }'
if [ "$TEXT" != "$EXPECTED" ]; then
    log "merged text is $(printf %q "$TEXT"), expected $(printf %q "$EXPECTED")"
    exit 1
fi
log "merged text is right"

OUT="$(cargo lambda invoke integrate --invoke-address 127.0.0.1 --invoke-port "$PORT" --data-file events/sns/ops.json)"
log "integrate answered $OUT"
[ "$(json "d['integrated']" <<<"$OUT")" = 1 ] || { log "integrate did not integrate the fixture"; exit 1; }
log "smoke test passed"
