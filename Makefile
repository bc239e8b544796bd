# The two commands: `make dev` (the whole system on this machine) and `make test` (every test).
.PHONY: dev test soak bench lint smoke migrate

REPLICAS ?= 1

dev:
	REPLICAS=$(REPLICAS) scripts/dev.sh

test:
	scripts/test.sh

smoke:
	scripts/smoke.sh

# The deploy step on DATABASE_URL (as its administrator): the migrations, and the functions'
# login when APP_DB_USER and APP_DB_PASSWORD are set. `make dev` and the tests run it for you.
migrate:
	cargo run --quiet -p migrate

# The long randomized runs that CI leaves out (random seeds, printed).
soak:
	cargo test --release -p rga --test convergence -- --ignored --nocapture
	scripts/soak.sh

bench:
	cargo run --release -p bench -- traces

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
