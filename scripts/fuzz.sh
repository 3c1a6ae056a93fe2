#!/usr/bin/env bash
# Fuzzes one target (or all, in turn) with cargo-fuzz on the nightly toolchain:
#   scripts/fuzz.sh [TARGET] [SECONDS]     (default: every target, 1800 s each)
# Targets: frame, space_description, cli_json, document_path, apply_write (fuzz/bodies.rs).
# Installs cargo-fuzz if needed, writes the seed corpus, and copies any crash into
# fuzz/regressions/TARGET/, which `make test` replays on stable (tests/fuzz_regressions.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS="${1:-frame space_description cli_json document_path apply_write}"
SECONDS_EACH="${2:-1800}"
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz
cargo +nightly run --quiet --manifest-path fuzz/Cargo.toml --bin seeds
for t in $TARGETS; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  echo "== $t for ${SECONDS_EACH}s"
  status=0
  (cd fuzz && cargo +nightly fuzz run "$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -print_final_stats=1) || status=$?
  for crash in fuzz/artifacts/"$t"/*; do
    [ -f "$crash" ] && cp "$crash" "fuzz/regressions/$t/" && echo "kept $crash"
  done
  [ "$status" -eq 0 ] || { echo "$t found a problem (exit $status)"; exit "$status"; }
done
