#!/usr/bin/env bash
# Starts what the tests and `make dev` need, reusing what already runs. Sourced by test.sh and
# dev.sh; every function prints what it did on stderr and exports what the rest needs.
#
#   ensure_venv          .venv with cargo-lambda, moto[server], cfn-lint, aws-sam-cli, schemathesis
#   migrated_db URL      runs the migrate step on URL, prints the functions' login URL
#   ensure_postgres      DATABASE_URL answering: the one given, the local server, or a private
#                        cluster under .dev/pg (initdb + pg_ctl; as the postgres user when root)
#   ensure_moto          a moto server on 127.0.0.1 (AWS_ENDPOINT_URL) and fake credentials
#   stop_started         stops what this shell started (called on exit)

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV="$ROOT/.dev"
VENV="$ROOT/.venv"
mkdir -p "$DEV"
STARTED_PIDS=()
STARTED_PG=""

log() { printf '[services] %s\n' "$*" >&2; }

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    # Exact versions (scripts/requirements.txt, from `pip freeze` of a working set): no resolver
    # backtracking, the same tools on every machine.
    local stamp="$VENV/.requirements"
    if ! cmp -s "$ROOT/scripts/requirements.txt" "$stamp" || [ ! -x "$VENV/bin/cargo-lambda" ]; then
        log "installing cargo-lambda, moto, cfn-lint, aws-sam-cli, schemathesis into $VENV (PyPI)"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/requirements.txt" >&2
        cp "$ROOT/scripts/requirements.txt" "$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}

pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return; }
    done
    command -v initdb >/dev/null && dirname "$(command -v initdb)" && return
    log "no PostgreSQL server binaries (initdb, pg_ctl) found"; return 1
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        su postgres -s /bin/bash -c "$*"
    else
        bash -c "$*"
    fi
}

pg_answers() {
    pg_isready -q -d "$1" -t 3 2>/dev/null && psql "$1" -tAc 'select 1' >/dev/null 2>&1
}

ensure_postgres() {
    local url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    if pg_answers "$url"; then
        log "PostgreSQL answers at $url"
        export DATABASE_URL="$url"
        return
    fi
    local bin port=55432 data="$DEV/pg"
    bin="$(pg_bin)"
    if [ ! -f "$data/PG_VERSION" ]; then
        log "creating a private PostgreSQL cluster in $data"
        mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown postgres "$DEV" "$data" 2>/dev/null || true
        chmod 700 "$data"
        as_postgres "'$bin/initdb' -D '$data' -U postgres -A trust -E UTF8 >/dev/null"
    fi
    url="postgres://postgres@127.0.0.1:$port/postgres"
    if ! pg_answers "$url"; then
        log "starting it on 127.0.0.1:$port"
        as_postgres "'$bin/pg_ctl' -D '$data' -l '$data/server.log' -w -t 60 -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=on\" start >/dev/null"
        STARTED_PG="$data"
    fi
    pg_answers "$url" || { log "the private cluster does not answer; see $data/server.log"; return 1; }
    export DATABASE_URL="$url"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() {
    local url="$1" tries="${2:-120}"
    for _ in $(seq "$tries"); do
        curl -s -o /dev/null "$url" && return 0
        sleep 0.5
    done
    log "$url does not answer"; return 1
}

# Waits for a `scripts/dev.sh` started in the background as pid $2 to write its ready file $1
# (DEV_READY_FILE), for at most $4 seconds (default 600); fails with the tail of its log $3 if it
# ends first.
wait_dev_ready() {
    local ready="$1" pid="$2" devlog="$3" secs="${4:-600}"
    for _ in $(seq "$((secs * 2))"); do
        [ -s "$ready" ] && return 0
        kill -0 "$pid" 2>/dev/null || { tail -30 "$devlog" >&2; return 1; }
        sleep 0.5
    done
    log "make dev did not come up; see $devlog"; return 1
}

ensure_moto() {
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
    export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_REGION:-us-east-1}"
    if [ -n "${AWS_ENDPOINT_URL:-}" ] && curl -s -o /dev/null "$AWS_ENDPOINT_URL/moto-api/"; then
        log "moto answers at $AWS_ENDPOINT_URL"
        return
    fi
    local port
    port="$(free_port)"
    log "starting moto on 127.0.0.1:$port"
    # moto's server with bounded state (scripts/moto_server.py): a long run stays as fast.
    "$VENV/bin/python" "$ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$DEV/moto.log" 2>&1 &
    STARTED_PIDS+=($!)
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
    wait_http "$AWS_ENDPOINT_URL/moto-api/"
}

stop_started() {
    local pid
    for pid in "${STARTED_PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    if [ -n "$STARTED_PG" ]; then
        log "stopping the private PostgreSQL cluster"
        as_postgres "'$(pg_bin)/pg_ctl' -D '$STARTED_PG' -m fast stop >/dev/null" || true
    fi
}

# A local HS256 token (what `AUTH_LOCAL_SECRET` verifies) for user $1, valid $2 seconds.
dev_token() {
    python3 - "$AUTH_LOCAL_SECRET" "$1" "${2:-86400}" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, user, ttl = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
body = b64(json.dumps({"sub": user, "exp": int(time.time()) + ttl}, separators=(",", ":")).encode())
sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
}

# Prints the ARN of the SNS topic $1 in moto, creating it (CreateTopic is idempotent).
sns_topic() {
    python3 - "$1" <<'PY'
import os, sys, boto3
sns = boto3.client("sns", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
print(sns.create_topic(Name=sys.argv[1])["TopicArn"])
PY
}

# Creates database $1 afresh beside DATABASE_URL's and prints its URL; drop_db removes it.
fresh_db() {
    psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >&2
    printf '%s/%s\n' "${DATABASE_URL%/*}" "$1"
}
drop_db() { psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" || true; }

# The deploy step, as in AWS: migrates the database at URL $1 as the administrator and makes
# the functions' login (role collab_app: reads and writes, cannot change the schema); prints
# the URL the functions connect with. Local servers trust local connections, so the password
# is only there to mirror AWS.
APP_DB_USER="${APP_DB_USER:-collab_fn}"
migrated_db() {
    (cd "$ROOT" && env DATABASE_URL="$1" APP_DB_USER="$APP_DB_USER" APP_DB_PASSWORD=local-dev-only \
        cargo run --quiet -p migrate) >&2
    local rest="${1#postgres://}"
    rest="${rest#*@}"
    printf 'postgres://%s:local-dev-only@%s\n' "$APP_DB_USER" "$rest"
}

# For scripts that drive the api under `cargo lambda watch` as one user: set API and TOKEN.
# api_call METHOD PATH [BODY] prints the body of a 2xx answer and fails on anything else.
api_call() {
    local out status
    out="$(curl -sS -w '\n%{http_code}' -X "$1" "$API$2" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' ${3:+--data "$3"})"
    status="${out##*$'\n'}"
    out="${out%$'\n'*}"
    case "$status" in 2*) printf '%s' "$out" ;; *) log "$1 $2 -> $status $out"; return 1 ;; esac
}
# json EXPR: evaluates EXPR over the JSON document on stdin, bound to `d`, and prints it.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }
# wait_api PID LOG: waits (up to 10 min: the first run compiles) until the api answers, failing
# with LOG if the watch process PID died first.
wait_api() {
    for _ in $(seq 600); do
        curl -s -o /dev/null -H "authorization: Bearer $TOKEN" "$API/documents" && return
        kill -0 "$1" 2>/dev/null || { cat "$2" >&2; exit 1; }
        sleep 1
    done
    log "the api did not answer within 10 minutes; see $2"
    exit 1
}
