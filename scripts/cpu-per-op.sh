#!/usr/bin/env bash
# CPU per operation of hyperdex builds, measured alternately in one session: for each build,
# `hyperdex local` (a coordinator and 3 daemons, tolerate 1) in a process of its own, loaded
# with 10,000 objects of 100 bytes, then 64 clients of `hyperdex bench` putting and getting.
# Prints the throughput and the CPU (user + system) the cluster's process and the load
# generator spent per operation, then the median latency of one client putting and getting
# (ONE operations each). CPU time is steadier than throughput on a shared machine, but it
# still moves with contention (spinning, wake-ups): compare builds within one run.
#
#   scripts/cpu-per-op.sh OLD_BINARY NEW_BINARY          # ROUNDS=2 by default
#   PUTS=60000 GETS=200000 ROUNDS=3 scripts/cpu-per-op.sh target/release/hyperdex
set -euo pipefail
ROUNDS=${ROUNDS:-2}
PUTS=${PUTS:-60000}
GETS=${GETS:-200000}
ONE=${ONE:-5000}
PORT=${PORT:-1991}
[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

one() { # binary
  local b=$1 data pid
  data=$(mktemp -d /tmp/hyperdex-cpu.XXXXXX)
  "$b" local --port "$PORT" --data "$data" >"$data.log" 2>&1 &
  pid=$!
  sleep 3
  "$b" bench --quiet --port "$PORT" --records 10000 --fields 1 --value-size 100 \
    --workload get --clients 64 --ops 1000 >/dev/null
  for w in "put $PUTS" "get $GETS"; do
    set -- $w
    local t0 t1 out rate client
    t0=$(ticks $pid)
    out=$({ /usr/bin/time -f 'cpu %U %S' "$b" bench --quiet --port "$PORT" --existing \
      --records 10000 --fields 1 --value-size 100 --workload "$1" --clients 64 --ops "$2"; } 2>&1)
    t1=$(ticks $pid)
    rate=$(echo "$out" | grep -o '= [0-9]* ops/s' | tr -dc 0-9)
    client=$(echo "$out" | awk '/^cpu /{print $2 + $3}')
    awk -v b="$b" -v w="$1" -v r="$rate" -v c="$client" -v t="$((t1 - t0))" -v n="$2" -v hz="$hz" \
      'BEGIN { printf "%-40s %s at 64 clients: %6d ops/s, cluster %5.1f us/op, load generator %5.1f us/op\n",
        b, w, r, t / hz * 1e6 / n, c * 1e6 / n }'
  done
  for w in put get; do
    local p50
    p50=$("$b" bench --quiet --port "$PORT" --existing --records 10000 --fields 1 --value-size 100 \
      --workload "$w" --clients 1 --ops "$ONE" | awk '$1 == "'"$w"'" {print $5}')
    printf '%-40s %s at 1 client: p50 %s us\n' "$b" "$w" "$p50"
  done
  kill $pid
  wait $pid 2>/dev/null || true
  rm -rf "$data" "$data.log"
}

for _ in $(seq "$ROUNDS"); do
  for b in "$@"; do one "$b"; done
done
