#!/usr/bin/env bash
# The page in real Chromium: starts `make dev REPLICAS=3` (scripts/dev.sh) on free ports with its
# own databases, then runs clients/web/test with playwright-core driving Debian's Chromium
# (installed with apt-get when missing; headless, no sandbox). Screenshots land in .dev/.
set -euo pipefail
source "$(dirname "$0")/services.sh"
ensure_postgres
cd "$ROOT"

if ! command -v chromium >/dev/null 2>&1; then
    log "installing Debian's chromium"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi
(cd clients/web && { [ -d node_modules ] || npm ci --no-audit --no-fund; })

# A base port with the page, three APIs and three gateways free.
free_base() {
    python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 40000, 10)
    ports = [base, base + 1, base + 2, base + 3, base + 101, base + 102, base + 103]
    try:
        socks = []
        for p in ports:
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        for s in socks: s.close()
        print(base); break
    except OSError:
        for s in socks: s.close()
PY
}
BASE="$(free_base)"
PREFIX="collab_web_$$"
READY="$DEV/web-test-$$.env"
rm -f "$READY"
log "make dev REPLICAS=3 on base port $BASE (log: .dev/web-test-dev.log)"
REPLICAS=3 DEV_BASE_PORT="$BASE" DEV_DB_PREFIX="$PREFIX" DEV_READY_FILE="$READY" \
    setsid scripts/dev.sh >"$DEV/web-test-dev.log" 2>&1 &
DEV_PID=$!
cleanup() {
    kill -TERM -- "-$DEV_PID" 2>/dev/null || true
    wait "$DEV_PID" 2>/dev/null || true
    for i in 1 2 3; do drop_db "${PREFIX}_$i" >/dev/null 2>&1 || true; done
    rm -f "$READY"
    stop_started
}
trap cleanup EXIT
wait_dev_ready "$READY" "$DEV_PID" "$DEV/web-test-dev.log" 600
set -a
source "$READY"
set +a
log "browser tests against $WEB_URL"
cd clients/web
node --test --test-concurrency=1 test/
