#!/usr/bin/env bash
# The API against its description: schemathesis generates requests from docs/openapi.yaml and
# sends them to the api function under `cargo lambda watch` (own database, own moto topic, as in
# smoke.sh), as alice with a local token. Fails (non-zero) on any 5xx, any response the spec does
# not describe, or any other failed check.
#
# Seeding: a document created with curl, a session on it, and a second, disposable document for
# DELETE. An ops message from another replica (the fixture events/sns/ops.json, pointed at the
# seeded document) goes through `integrate` with COMPACT_AFTER=1, so the document also has
# snapshot 1. The hooks (scripts/schemathesis_hooks.py) put the seeded ids into the spec's
# examples (which name the events/api fixtures' placeholders) and into about half of the
# generated requests, so the 2xx paths run too, not only the 404s of random ids.
#
# Checks: all, with a second identity (bob) for object_level_authorization, and the stateful
# phase on the links schemathesis infers (use_after_free, ensure_resource_availability); except
#   positive_data_acceptance: it wants 2xx for every schema-valid request, but validity here
#     depends on state no schema can carry: random document ids are 404, random sessions 409,
#     edit indexes past the end of the text 400, ops that break the S4Vector rules 422.
#   unsupported_method: it wants 405 with Allow for a method a path does not list; the router
#     deliberately answers 400 `malformed` with the JSON error body (and in AWS, API Gateway
#     answers unrouted methods with 404 before the function runs).
#
# The functions are built once (`--ignore-changes`): an edit in the tree mid-run must not restart
# them under the fuzzer. Reports (JUnit, HAR) and schemathesis' crash store for `st replay` are
# in .dev/schemathesis.
#
# Environment: SCHEMATHESIS_MAX_EXAMPLES (default 50 per operation and phase), SCHEMATHESIS_SEED
# (default random; the run prints it), SCHEMATHESIS_WORKERS (default 4).
set -euo pipefail
source "$(dirname "$0")/services.sh"
trap stop_started EXIT
ensure_venv
ensure_postgres
ensure_moto
cd "$ROOT"

PORT="$(free_port)"
export AUTH_LOCAL_SECRET="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
TOPIC="$(sns_topic collab-ops)"
DB="collab_schemathesis_$$"
ST_DB_URL="$(migrated_db "$(fresh_db "$DB")")"
ST_HOME="$DEV/schemathesis"
mkdir -p "$ST_HOME"
rm -rf "$ST_HOME/report"
WORK="$(mktemp -d "$ST_HOME/run.XXXXXX")"
cleanup() {
    [ -n "${WATCH_PID:-}" ] && kill "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null
    drop_db "$DB"
    rm -rf "$WORK"
    stop_started
}
trap cleanup EXIT

log "cargo lambda watch on 127.0.0.1:$PORT (topic $TOPIC)"
env DATABASE_URL="$ST_DB_URL" SNS_TOPIC="$TOPIC" REPLICA_ID=1 SSN_ID=1 COMPACT_AFTER=1 RUST_LOG=info \
    cargo lambda watch --ignore-changes --invoke-address 127.0.0.1 --invoke-port "$PORT" >"$ST_HOME/watch.log" 2>&1 &
WATCH_PID=$!

API="http://127.0.0.1:$PORT/lambda-url/api"
TOKEN="$(dev_token alice 3600)"

wait_api "$WATCH_PID" "$ST_HOME/watch.log"

DOC="$(api_call POST /documents '{"title":"seed.rs","content":"fn main() {}\n"}' | json "d['id']")"
SESSION="$(api_call POST "/documents/$DOC/sessions" | json "d['session']")"
DISPOSABLE="$(api_call POST /documents '{"title":"disposable.rs"}' | json "d['id']")"
sed "s/00000000-0000-4000-8000-000000000001/$DOC/g" events/sns/ops.json >"$WORK/ops.json"
cargo lambda invoke integrate --invoke-address 127.0.0.1 --invoke-port "$PORT" --data-file "$WORK/ops.json" >/dev/null
SNAPSHOTS="$(api_call GET "/documents/$DOC/snapshots" | json "len(d['snapshots'])")"
[ "$SNAPSHOTS" -ge 1 ] || { log "integrate wrote no snapshot of $DOC"; exit 1; }
log "seeded document $DOC (session $SESSION, $SNAPSHOTS snapshot), disposable $DISPOSABLE"

# Two identities (Web Fuzzing Commons auth file): every request is alice's; bob is the peer that
# object_level_authorization replays alice's successful reads as, and he must not get them.
cat >"$WORK/auth.json" <<JSON
{"auth": [
  {"name": "alice", "fixedHeaders": [{"name": "Authorization", "value": "Bearer $TOKEN"}]},
  {"name": "bob", "fixedHeaders": [{"name": "Authorization", "value": "Bearer $(dev_token bob 3600)"}]}
]}
JSON
cat >"$WORK/schemathesis.toml" <<TOML
[auth.wfc]
path = "$WORK/auth.json"
user = "alice"
peers = ["alice", "bob"]
TOML

SEED_ARGS=()
[ -n "${SCHEMATHESIS_SEED:-}" ] && SEED_ARGS=(--seed "$SCHEMATHESIS_SEED")
(
    cd "$ST_HOME"
    COLLAB_SEED_DOC="$DOC" COLLAB_SEED_SESSION="$SESSION" COLLAB_SEED_DISPOSABLE_DOC="$DISPOSABLE" \
    SCHEMATHESIS_HOOKS="$ROOT/scripts/schemathesis_hooks.py" \
        schemathesis --config-file "$WORK/schemathesis.toml" run "$ROOT/docs/openapi.yaml" \
        --url "$API" \
        --checks all \
        --exclude-checks positive_data_acceptance,unsupported_method \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
        --workers "${SCHEMATHESIS_WORKERS:-4}" \
        --request-timeout 30 \
        --report junit,har --report-dir "$ST_HOME/report" \
        --no-color \
        "${SEED_ARGS[@]}"
)
log "schemathesis passed"
