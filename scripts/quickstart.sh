#!/usr/bin/env bash
# Builds hyperdex, starts a local cluster (a coordinator on 127.0.0.1:1982 and three
# daemons), runs a first query, and leaves the cluster running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-1982}"
cargo build --release --quiet
BIN=target/release/hyperdex

"$BIN" local --port "$PORT" &
CLUSTER=$!
trap 'kill "$CLUSTER" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 200); do
  if [ "$("$BIN" show-config -p "$PORT" 2>/dev/null | grep -c AVAILABLE)" -ge 3 ]; then break; fi
  sleep 0.1
done

set -x
"$BIN" add-space -p "$PORT" <<'SPACE'
space friendlists
key username
attributes
   string first,
   string last,
   set(string) friends
SPACE
"$BIN" put -p "$PORT" friendlists jsmith1 '{"first": "John", "last": "Smith"}'
"$BIN" atomic -p "$PORT" set-add friendlists jsmith1 '{"friends": "jd"}'
"$BIN" get -p "$PORT" friendlists jsmith1
"$BIN" search -p "$PORT" friendlists '{"first": "John"}'
set +x

if [ -n "${QUICKSTART_EXIT:-}" ]; then exit 0; fi
echo "The cluster keeps running on 127.0.0.1:$PORT; press Ctrl-C to stop it."
wait "$CLUSTER"
