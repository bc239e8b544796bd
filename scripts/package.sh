#!/usr/bin/env bash
# `make package`: the arm64 bootstraps SAM uploads, built non-interactively on a fresh machine.
#
#   scripts/package.sh         `sam build` (template.yaml, BuildMethod rust-cargolambda: SAM runs
#                              `cargo lambda build --release --arm64` per function into .aws-sam/)
#   scripts/package.sh build   the same cargo lambda build once for all four functions, into
#                              target/lambda/<function>/bootstrap (quicker; what deploy-check uses)
#
# Installs what is missing: the aarch64 Rust target, cargo-lambda and its Zig (PyPI, in .venv),
# the SAM CLI. rust-cargolambda is a beta build method: samconfig.toml sets beta_features, and
# --beta-features is passed too, so no SAM version stops to ask. Prints the time and each
# bootstrap's size, raw and gzipped.
set -euo pipefail
export SAM_CLI_TELEMETRY=0
source "$(dirname "$0")/services.sh"
ensure_venv
cd "$ROOT"
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
    rustup target add aarch64-unknown-linux-gnu >&2

FUNCS=(api integrate realtime migrate)
start=$(date +%s)
if [ "${1:-}" = build ]; then
    cargo lambda build --release --arm64 "${FUNCS[@]/#/--package=}" >&2
    out() { echo "target/lambda/$1/bootstrap"; }
else
    sam build --beta-features --template template.yaml >&2
    out() {
        case "$1" in
        api) echo .aws-sam/build/ApiFunction/bootstrap ;;
        integrate) echo .aws-sam/build/IntegrateFunction/bootstrap ;;
        realtime) echo .aws-sam/build/RealtimeFunction/bootstrap ;;
        migrate) echo .aws-sam/build/MigrateFunction/bootstrap ;;
        esac
    }
fi
log "built in $(($(date +%s) - start)) s"
paths=()
for f in "${FUNCS[@]}"; do paths+=("$f=$(out "$f")"); done
python3 - "${paths[@]}" <<'PY'
import gzip, struct, sys
print("| function | bootstrap (arm64, stripped) | gzipped |\n|---|---:|---:|")
for arg in sys.argv[1:]:
    name, path = arg.split("=", 1)
    data = open(path, "rb").read()
    # ELF, e_machine 183 (EM_AARCH64)
    if data[:4] != b"\x7fELF" or struct.unpack_from("<H", data, 18)[0] != 183:
        sys.exit(f"{path} is not an arm64 executable")
    print(f"| {name} | {len(data) / 1e6:.1f} MB | {len(gzip.compress(data, 9)) / 1e6:.1f} MB |")
PY
