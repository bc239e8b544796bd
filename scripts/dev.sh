#!/usr/bin/env bash
# `make dev [REPLICAS=N]`: the whole system on this machine, no AWS account. PostgreSQL (the local
# server, or a private cluster under .dev/pg), one database per replica, a moto server for SNS
# and SQS, each replica's functions under `cargo lambda watch` on 127.0.0.1, and a relay that
# delivers each replica's SNS subscription to its integrate function, and the editor page
# (clients/web) on 127.0.0.1. Ctrl-C stops everything this script started.
#
# DEV_BASE_PORT (default 9100) moves every port: the page on BASE, replica i's API on BASE+i and
# its WebSocket gateway on BASE+100+i. DEV_DB_PREFIX (default collab_dev) names the databases.
# DEV_READY_FILE, if set, receives the printed URLs and tokens once everything answers.
# DEV_RELEASE=1 runs release builds; DEV_CONCURRENCY sets instances per function (below).
set -euo pipefail
source "$(dirname "$0")/services.sh"
N="${REPLICAS:-1}"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { log "REPLICAS must be a positive integer"; exit 2; }
BASE="${DEV_BASE_PORT:-9100}"
DB_PREFIX="${DEV_DB_PREFIX:-collab_dev}"
WATCH_PIDS=()
shutdown() {
    trap - INT TERM EXIT
    log "stopping"
    for pid in "${WATCH_PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    stop_started
}
trap shutdown INT TERM EXIT

ensure_venv
ensure_postgres
ensure_moto
cd "$ROOT"

# The editor page: the client (its WebAssembly build included) and the page's bundle.
log "building the editor page (clients/js, clients/web)"
(cd clients/js && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run --silent build)
(cd clients/web && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run --silent build)

SECRET_FILE="$DEV/auth-secret"
[ -s "$SECRET_FILE" ] || python3 -c 'import secrets; print(secrets.token_hex(32))' >"$SECRET_FILE"
export AUTH_LOCAL_SECRET="$(cat "$SECRET_FILE")"

# The shared topic, and per replica a queue subscribed with template.yaml's filter policy.
mapfile -t WIRING < <(python3 - "$N" <<'PY'
import json, os, sys, boto3
n = int(sys.argv[1])
kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
sns, sqs = boto3.client("sns", **kw), boto3.client("sqs", **kw)
topic = sns.create_topic(Name="collab-ops")["TopicArn"]
print(topic)
for i in range(1, n + 1):
    url = sqs.create_queue(QueueName=f"collab-replica-{i}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"replica_id": [{"anything-but": [str(i)]}]})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"FilterPolicy": policy})
    print(url)
PY
)
# Release builds for the functions and the gateway with DEV_RELEASE=1 (the load benchmark).
PROFILE_DIR=debug
BUILD_FLAGS=()
if [ "${DEV_RELEASE:-0}" = 1 ]; then
    PROFILE_DIR=release
    BUILD_FLAGS=(--release)
fi
WATCH_FLAGS=("${BUILD_FLAGS[@]}")
# DEV_CONCURRENCY (default 1): how many instances of each function cargo lambda watch may run at
# once, as Lambda scales out to concurrent requests (the load benchmark sets more).
WATCH_CONCURRENCY=(--concurrency "${DEV_CONCURRENCY:-1}")
# DEV_IGNORE_CHANGES=1: no rebuild when a file changes (the fault test and the load benchmark, so
# that neither an edit nor the logs it writes under .dev restart or slow the functions).
[ "${DEV_IGNORE_CHANGES:-0}" = 1 ] && WATCH_FLAGS+=(--ignore-changes)
FUNCTIONS='target/(debug|release)/(api|integrate|realtime)'
# The function processes `cargo lambda watch` on port $1 runs (one per function once invoked),
# as "pid name" lines.
# Reads each environment in bash itself: the supervisors poll twice a second, and a few
# processes forked per function process added up to a fifth of the machine under load.
function_procs() {
    local p var api name
    for p in $(pgrep -f "$FUNCTIONS\$" || true); do
        api="" name=""
        while IFS= read -r -d '' var; do
            case "$var" in
                AWS_LAMBDA_RUNTIME_API=*) api="${var#*=}" ;;
                AWS_LAMBDA_FUNCTION_NAME=*) name="${var#*=}" ;;
            esac
        done 2>/dev/null <"/proc/$p/environ"
        [[ "$api" == "http://127.0.0.1:$1/"* ]] && echo "$p $name"
    done
    return 0
}

# Replica $1's functions under `cargo lambda watch` on port $2, as Lambda runs them: when a function
# process dies (killed, crashed, or ended at start), cargo lambda watch neither answers its
# requests nor starts another, so the whole watch is replaced by a fresh one (a new execution
# environment; the dead process's request fails and its client retries). A function is dead when
# the watch started it (cargo's "Running" line in the log) and no process of it is there at two
# polls in a row; the watch's own "command exited" line says so at once.
supervise() {
    local i="$1" port="$2" log="$DEV/watch-$1.log" procs p f line dead seen size started missing lost
    # Runs in its own subshell: a failed probe must not end it, and stopping it stops the watch.
    set +e
    SUPERVISED=""
    trap 'kill $SUPERVISED 2>/dev/null; exit 0' TERM INT
    while true; do
        seen="$(stat -c %s "$log")"
        cargo lambda watch "${WATCH_FLAGS[@]}" "${WATCH_CONCURRENCY[@]}" --invoke-address 127.0.0.1 --invoke-port "$port" >>"$log" 2>&1 &
        SUPERVISED=$!
        started=""
        missing=""
        procs=""
        while kill -0 "$SUPERVISED" 2>/dev/null; do
            dead=""
            # Only what the log gained since the last poll, and of that only the lines that
            # matter (under load the log grows by megabytes a minute).
            size="$(stat -c %s "$log")"
            while IFS= read -r line; do
                case "$line" in
                    command*) dead="(exited)" ;;
                    *) f="${line##*/}" f="${f%\`}"
                       [[ " $started " == *" $f "* ]] || started="$started $f" ;;
                esac
            done < <(tail -c +"$((seen + 1))" "$log" | head -c "$((size - seen))" |
                grep -a -o -E "command (exited|killed|stopped|ended by exception)|Running \`$FUNCTIONS\`")
            seen="$size"
            procs=$'\n'"$(function_procs "$port")"$'\n'
            lost=""
            for f in $started; do
                [[ "$procs" == *" $f"$'\n'* ]] || lost="$lost $f"
            done
            for f in $lost; do
                [[ " $missing " == *" $f "* ]] && dead="$f"
            done
            missing="$lost"
            if [ -n "$dead" ]; then
                log "replica $i: function process $dead died; starting a fresh cargo lambda watch"
                kill "$SUPERVISED" 2>/dev/null
                break
            fi
            sleep 0.5
        done
        wait "$SUPERVISED" 2>/dev/null
        pkill -P "$SUPERVISED" 2>/dev/null
        for p in $(function_procs "$port" | cut -d' ' -f1); do kill "$p" 2>/dev/null; done
        # The port is free again once the old watch is gone.
        for _ in $(seq 100); do
            python3 -c "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $port))" 2>/dev/null && break
            sleep 0.1
        done
    done
}

TOPIC="${WIRING[0]}"
RELAY_ARGS=()
for i in $(seq "$N"); do
    port=$((BASE + i))
    db="${DB_PREFIX}_$i"
    psql "$DATABASE_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 || psql "$DATABASE_URL" -qc "CREATE DATABASE $db"
    log "replica $i: database $db, functions on 127.0.0.1:$port (log: .dev/watch-$i.log)"
    # A low COMPACT_AFTER so the page's history shows snapshots after a few edits.
    # The deploy step first (migrations as the administrator, the functions' login), then the
    # functions connect with that login, as in AWS.
    app_url="$(migrated_db "${DATABASE_URL%/*}/$db")"
    : >"$DEV/watch-$i.log"
    (
        export DATABASE_URL="$app_url" SNS_TOPIC="$TOPIC" REPLICA_ID="$i" SSN_ID=1 RUST_LOG=info \
            COMPACT_AFTER="${COMPACT_AFTER:-100}" \
            WS_MANAGEMENT_ENDPOINT="http://127.0.0.1:$((BASE + 100 + i))/dev"
        supervise "$i" "$port"
    ) &
    WATCH_PIDS+=($!)
    RELAY_ARGS+=("${WIRING[$i]}=http://127.0.0.1:$port/2015-03-31/functions/integrate/invocations")
done

TOKEN="$(dev_token alice 604800)"
TOKEN2="$(dev_token bob 604800)"
TOKEN3="$(dev_token carol 604800)"
for i in $(seq "$N"); do
    url="http://127.0.0.1:$((BASE + i))/lambda-url/api/documents"
    log "waiting for replica $i to build and answer (the first build takes a few minutes)"
    for _ in $(seq 1800); do
        curl -s -o /dev/null -H "authorization: Bearer $TOKEN" "$url" && break
        kill -0 "${WATCH_PIDS[$((i - 1))]}" 2>/dev/null || { tail -20 "$DEV/watch-$i.log" >&2; exit 1; }
        sleep 1
    done
done

# One local WebSocket gateway per replica, in front of its realtime function.
cargo build --quiet "${BUILD_FLAGS[@]}" -p wsgateway
for i in $(seq "$N"); do
    "target/$PROFILE_DIR/wsgateway" --listen "127.0.0.1:$((BASE + 100 + i))" --stage dev \
        --invoke "http://127.0.0.1:$((BASE + i))/2015-03-31/functions/realtime/invocations" >"$DEV/gateway-$i.log" 2>&1 &
    STARTED_PIDS+=($!)
done

# The page's configuration: the replicas (the page server proxies /api/<i> to replica i) and the
# development users' tokens.
mkdir -p "$DEV/web"
WEB_ARGS=()
python3 - "$N" "$BASE" "$TOKEN" "$TOKEN2" "$TOKEN3" >"$DEV/web/config.json" <<'PY'
import json, sys
n, base, tokens = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
print(json.dumps({
    "replicas": [{"name": f"replica {i}", "api": f"/api/{i}", "ws": f"ws://127.0.0.1:{base + 100 + i}/"}
                 for i in range(1, n + 1)],
    "users": [{"name": u, "token": t} for u, t in zip(["alice", "bob", "carol"], tokens)],
}, indent=2))
PY
for i in $(seq "$N"); do WEB_ARGS+=(--api "$i=http://127.0.0.1:$((BASE + i))/lambda-url/api"); done
node clients/web/serve.mjs --listen "127.0.0.1:$BASE" --config "$DEV/web/config.json" "${WEB_ARGS[@]}" >"$DEV/web.log" 2>&1 &
STARTED_PIDS+=($!)
wait_http "http://127.0.0.1:$BASE/config.json"

"$VENV/bin/python" scripts/relay.py "$AWS_ENDPOINT_URL" "$TOPIC" "${RELAY_ARGS[@]}" 2>"$DEV/relay.log" &
STARTED_PIDS+=($!)

urls() {
    echo "WEB_URL=http://127.0.0.1:$BASE/"
    if [ "$N" = 1 ]; then
        echo "API_URL=http://127.0.0.1:$((BASE + 1))/lambda-url/api"
        echo "WS_URL=ws://127.0.0.1:$((BASE + 101))/"
    else
        for i in $(seq "$N"); do echo "API_URL_$i=http://127.0.0.1:$((BASE + i))/lambda-url/api"; done
        for i in $(seq "$N"); do echo "WS_URL_$i=ws://127.0.0.1:$((BASE + 100 + i))/"; done
    fi
    echo "DEV_TOKEN=$TOKEN"
    echo "DEV_TOKEN_2=$TOKEN2"
    echo "DEV_TOKEN_3=$TOKEN3"
}
echo
urls
[ -z "${DEV_READY_FILE:-}" ] || urls >"$DEV_READY_FILE"
echo
echo "Open WEB_URL in a browser: sign in as alice, then as bob in another window (carol is for sharing as a viewer)."
echo "Try:"
echo "  curl -s -X POST http://127.0.0.1:$((BASE + 1))/lambda-url/api/documents -H \"authorization: Bearer \$DEV_TOKEN\" -H 'content-type: application/json' -d '{\"title\":\"hello.rs\",\"content\":\"fn main() {}\"}'"
echo
echo "  websocat \"ws://127.0.0.1:$((BASE + 101))/?document=<id>&token=\$DEV_TOKEN\"   # then send {\"type\":\"ping\"}"
echo
echo "Ctrl-C stops everything."
wait "${WATCH_PIDS[0]}"
