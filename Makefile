# The two commands: `make dev` (the whole system on this machine) and `make test` (every test).
.PHONY: dev test soak bench lint smoke

REPLICAS ?= 1

dev:
	REPLICAS=$(REPLICAS) scripts/dev.sh

test:
	scripts/test.sh

smoke:
	scripts/smoke.sh

# The long randomized runs that CI leaves out (random seeds, printed).
soak:
	cargo test --release -p rga --test convergence -- --ignored --nocapture
	scripts/soak.sh

bench:
	cargo run --release -p bench -- traces

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
