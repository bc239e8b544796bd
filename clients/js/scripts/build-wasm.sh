#!/bin/sh
# Builds clients/wasm for wasm32 and generates its JS glue into clients/js/wasm/. Installs what is
# missing: the wasm32 target, and wasm-bindgen-cli at exactly the version clients/wasm pins.
set -eu
HERE="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PIN="$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' "$ROOT/clients/wasm/Cargo.toml")"
[ -n "$PIN" ] || { echo "clients/wasm/Cargo.toml does not pin wasm-bindgen" >&2; exit 1; }
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
if ! wasm-bindgen --version 2>/dev/null | grep -q " $PIN\$"; then
    echo "installing wasm-bindgen-cli $PIN" >&2
    cargo install --quiet wasm-bindgen-cli --version "$PIN"
fi
cd "$ROOT"
cargo build --quiet --release --target wasm32-unknown-unknown -p rga-wasm
rm -rf "$HERE/wasm"
wasm-bindgen --target web --out-dir "$HERE/wasm" --out-name rga_wasm --remove-name-section --remove-producers-section \
    target/wasm32-unknown-unknown/release/rga_wasm.wasm
