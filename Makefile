# The one entry point for checks. `make test` is what CI runs (.ci/run) and what the README
# tells everyone to run: formatting, lints and docs in both configurations, every unit,
# property, snapshot and integration test, and the simulation (200 seeds under the full
# fault mix, a determinism check, and the planted-bug sweep).
CARGO ?= cargo
SIM_DIR ?= target/sim
SIM = RUSTFLAGS="--cfg madsim" $(CARGO)
SIM_SEEDS ?= 200

.PHONY: test fmt-check clippy clippy-sim doc unit sim python sweep netns netns-check
PYENV ?= target/pyenv

test: fmt-check clippy clippy-sim doc unit sim python netns-check

fmt-check:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path python/Cargo.toml -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path python/Cargo.toml -- -D warnings

clippy-sim:
	$(SIM) clippy --workspace --all-targets --target-dir $(SIM_DIR) -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

unit:
	$(CARGO) test --workspace

sim:
	SIM_SEEDS=$(SIM_SEEDS) $(SIM) test --profile sim -p hyperdex-sim --target-dir $(SIM_DIR) --test ci_seeds -- --nocapture
	MADSIM_TEST_SEED=1 MADSIM_TEST_NUM=3 MADSIM_TEST_CHECK_DETERMINISM=1 $(SIM) test --profile sim -p hyperdex-sim --target-dir $(SIM_DIR) --test linearizability
	$(SIM) test --profile sim -p hyperdex-sim --target-dir $(SIM_DIR) --test determinism --test planted_bugs --test tolerance --test power -- --nocapture

# The Python package: one abi3 wheel built from ./python (distribution hyperdex-rs), installed
# into a fresh virtualenv with no Rust toolchain on the PATH (it must not need one), then into
# the test virtualenv and tested against a real cluster (including the seed chapter as a
# doctest).
WHEELS ?= target/wheels
python:
	$(CARGO) build
	test -x $(PYENV)/bin/python || python3 -m venv $(PYENV)
	$(PYENV)/bin/pip install -q --upgrade pip maturin pytest
	rm -rf $(WHEELS) target/wheelenv
	$(PYENV)/bin/maturin build -q --release -m python/Cargo.toml --out $(WHEELS)
	ls $(WHEELS)/hyperdex_rs-*-cp39-abi3-*.whl
	python3 -m venv target/wheelenv
	env PATH=/usr/bin:/bin target/wheelenv/bin/pip install -q --no-index $(WHEELS)/hyperdex_rs-*.whl
	env PATH=/usr/bin:/bin target/wheelenv/bin/python -c "import hyperdex.client, hyperdex.admin, hyperclient, macaroons; hyperdex.client.Client"
	$(PYENV)/bin/pip install -q --force-reinstall --no-deps $(WHEELS)/hyperdex_rs-*.whl
	HYPERDEX_BIN=target/debug/hyperdex $(PYENV)/bin/pytest -q python/tests

# The real-process partition test across network namespaces (needs root and iproute2):
# coordinator, three daemons and a client each in a namespace of their own; a daemon's link
# is cut under load. `make test` runs it too, or says why it cannot (it needs root).
netns: python
	scripts/netns-partition.sh

# In make test, after the Python package is built: the same, or a line saying why this
# machine cannot run it.
netns-check:
	scripts/netns-partition.sh --or-skip

# A long seed sweep with a progress bar and a summary: make sweep SEEDS=10000
SEEDS ?= 10000
sweep:
	$(SIM) run --profile sim -p hyperdex-sim --target-dir $(SIM_DIR) --bin sweep -- --seeds $(SEEDS)
