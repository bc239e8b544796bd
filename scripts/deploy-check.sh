#!/usr/bin/env bash
# `make deploy-check`: the release bootstraps, started as Lambda starts them, against a local
# Runtime API (`cargo lambda watch --only-lambda-apis`), with the template's environment and the
# fixtures in events/ (see scripts/deploy_check.py). Prints init, first and warm times.
#
#   ARCH=x86_64   `cargo build --release` for this machine (the init-time target is for this)
#   ARCH=arm64    `cargo lambda build --release --arm64` (what `sam build` runs), the binaries
#                 run under qemu-user (Debian's qemu-user and the arm64 C library, installed
#                 when missing): the artifacts SAM uploads, proven to start
#   default: both, x86_64 first
set -euo pipefail
source "$(dirname "$0")/services.sh"
trap stop_started EXIT
ensure_venv
ensure_postgres
ensure_moto
cd "$ROOT"

FUNCS=(api integrate realtime migrate)
check() {
    local arch="$1" bin runner=()
    case "$arch" in
    x86_64)
        log "cargo build --release (${FUNCS[*]})"
        cargo build --release --quiet "${FUNCS[@]/#/--package=}"
        bin="$DEV/deploy-check-bin"
        mkdir -p "$bin"
        for f in "${FUNCS[@]}"; do cp "target/release/$f" "$bin/$f"; done
        ;;
    arm64)
        scripts/package.sh build
        bin="$DEV/deploy-check-bin-arm64"
        mkdir -p "$bin"
        for f in "${FUNCS[@]}"; do cp "target/lambda/$f/bootstrap" "$bin/$f"; done
        if ! command -v qemu-aarch64 >/dev/null || [ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; then
            log "installing qemu-user and the arm64 C library (Debian)"
            local sudo=()
            [ "$(id -u)" = 0 ] || sudo=(sudo)
            "${sudo[@]}" apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq qemu-user libc6-arm64-cross >&2
        fi
        runner=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
        ;;
    *) log "ARCH is x86_64 or arm64, not $arch"; exit 2 ;;
    esac
    log "deploy check, $arch"
    "$VENV/bin/python" scripts/deploy_check.py "$bin" "$arch" "${runner[@]}"
}
for arch in ${ARCH:-x86_64 arm64}; do check "$arch"; done
