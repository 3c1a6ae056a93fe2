# The one entry point for checks. `make test` is what CI runs (.ci/run) and what the README
# tells everyone to run: formatting, lints and docs in both configurations, every unit,
# property, snapshot and integration test, and the simulation (200 seeds under the full
# fault mix, a determinism check, and the planted-bug sweep).
CARGO ?= cargo
SIM_DIR ?= target/sim
SIM = RUSTFLAGS="--cfg madsim" $(CARGO)
SIM_SEEDS ?= 200

.PHONY: test fmt-check clippy clippy-sim doc unit sim sweep

test: fmt-check clippy clippy-sim doc unit sim

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clippy-sim:
	$(SIM) clippy --workspace --all-targets --target-dir $(SIM_DIR) -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

unit:
	$(CARGO) test --workspace

sim:
	MADSIM_TEST_NUM=$(SIM_SEEDS) $(SIM) test -p hyperdex-sim --target-dir $(SIM_DIR) --test linearizability
	MADSIM_TEST_NUM=3 MADSIM_TEST_CHECK_DETERMINISM=1 $(SIM) test -p hyperdex-sim --target-dir $(SIM_DIR) --test linearizability
	$(SIM) test -p hyperdex-sim --target-dir $(SIM_DIR) --test determinism --test planted_bugs -- --nocapture

# A long seed sweep with a progress bar and a summary: make sweep SEEDS=10000
SEEDS ?= 10000
sweep:
	$(SIM) run --release -p hyperdex-sim --target-dir $(SIM_DIR) --bin sweep -- --seeds $(SEEDS)
