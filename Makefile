# The two commands: `make dev` (the whole system on this machine) and `make test` (every test).
.PHONY: dev test soak fault bench load lint smoke migrate package deploy-check

REPLICAS ?= 1

dev:
	REPLICAS=$(REPLICAS) scripts/dev.sh

test:
	scripts/test.sh

smoke:
	scripts/smoke.sh

# The arm64 bootstraps `sam deploy` uploads (`sam build`, non-interactive); time and sizes.
package:
	scripts/package.sh

# The release bootstraps started as Lambda starts them, with the template's environment, each
# invoked with fixtures from events/; init, first and warm times. ARCH=arm64 runs the arm64
# build under qemu-user. `make test` runs it (x86_64).
deploy-check:
	scripts/deploy-check.sh

# The deploy step on DATABASE_URL (as its administrator): the migrations, and the functions'
# login when APP_DB_USER and APP_DB_PASSWORD are set. `make dev` and the tests run it for you.
migrate:
	cargo run --quiet -p migrate

# The long randomized runs that CI leaves out (random seeds, printed): the CRDT's, the replica
# harness's, and the fault test on real processes for FAULT_SECONDS (default 300).
soak:
	cargo test --release -p rga --test convergence -- --ignored --nocapture
	scripts/soak.sh
	FAULT_SEED=$${FAULT_SEED:-0} FAULT_SECONDS=$${FAULT_SECONDS:-300} scripts/fault-test.sh

# The fault test on real processes (make dev REPLICAS=3), the CI seed unless FAULT_SEED is set.
fault:
	scripts/fault-test.sh

bench:
	cargo run --release -p bench -- traces

# Simulated editors against make dev REPLICAS=3 with release builds (scripts/load.sh; LOAD_ARGS
# passes options to `bench load`): latencies, errors, throughput, at 1x, 2x, 4x until it gives.
load:
	scripts/load.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
