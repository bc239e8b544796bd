#!/usr/bin/env bash
# `make test`: every test, starting what they need (PostgreSQL where none answers, moto,
# cargo-lambda): formatting and lints, `cargo test`, the template checks, then the smoke test
# against the functions running under `cargo lambda watch`.
set -euo pipefail
source "$(dirname "$0")/services.sh"
trap stop_started EXIT

ensure_venv
ensure_postgres
ensure_moto
cd "$ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings


step "cargo test (DATABASE_URL=$DATABASE_URL, AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL)"
cargo test --quiet

step "template checks"
sam validate --lint --template template.yaml --region us-east-1
cfn-lint template.yaml
python scripts/template_sql.py

step "the local stack's moto keeps bounded state (scripts/moto_server.py)"
python scripts/moto_bounds_check.py

step "smoke test"
scripts/smoke.sh

step "deploy check: the release bootstraps under a local Lambda Runtime API, with the template's environment"
scripts/deploy-check.sh

step "the fault test: make dev REPLICAS=3 under SIGKILL, a PostgreSQL restart, a stalled SNS, a stopped relay and cut sockets (seed 1)"
scripts/fault-test.sh

step "the editor client (clients/js): WebAssembly build, type check, unit tests, tests against the local stack"
scripts/client-test.sh

step "the editor page in real Chromium against make dev REPLICAS=3 (clients/web)"
(cd clients/web && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run --silent typecheck)
scripts/web-test.sh

step "schemathesis against docs/openapi.yaml"
scripts/schemathesis.sh

step "all tests passed"
