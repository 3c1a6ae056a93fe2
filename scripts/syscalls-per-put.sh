#!/usr/bin/env bash
# System calls per put of hyperdex builds: for each build, `hyperdex local` (a coordinator and
# 3 daemons, tolerate 1) in a process of its own, loaded with 10,000 objects of 100 bytes,
# then CLIENTS clients of `hyperdex bench` putting OPS times while `perf stat` counts the
# cluster's fdatasync and sendto calls and context switches. Counts per put are steadier than
# times on a shared machine (one client's are nearly exact), so builds compare within a run.
#
#   scripts/syscalls-per-put.sh OLD_BINARY NEW_BINARY       # CLIENTS=1 OPS=3000 ROUNDS=2
#   CLIENTS=64 OPS=60000 scripts/syscalls-per-put.sh target/release/hyperdex
set -euo pipefail
CLIENTS=${CLIENTS:-1}
OPS=${OPS:-3000}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-1991}
[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 2; }

one() { # binary
  local b=$1 d pid sp out
  d=$(mktemp -d /tmp/hyperdex-syscalls.XXXXXX)
  "$b" local --port "$PORT" --data "$d/data" >"$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    "$b" wait-until-stable --port "$PORT" >/dev/null 2>&1 && break
    sleep 0.2
  done
  "$b" bench --quiet --port "$PORT" --records 10000 --fields 1 --value-size 100 \
    --workload get --clients 64 --ops 1000 >/dev/null
  perf stat -e 'syscalls:sys_enter_fdatasync,syscalls:sys_enter_sendto,context-switches' \
    -p "$pid" -o "$d/stat.txt" &
  sp=$!
  sleep 0.3
  out=$("$b" bench --quiet --port "$PORT" --existing --records 10000 --fields 1 --value-size 100 \
    --workload put --clients "$CLIENTS" --ops "$OPS" | grep -o '= [0-9]* ops/s')
  kill -INT "$sp"
  wait "$sp" 2>/dev/null || true
  awk -v b="$b" -v n="$OPS" -v c="$CLIENTS" -v r="$out" '
    { gsub(",", "", $1) }
    /fdatasync/ { f = $1 } /sendto/ { s = $1 } /context-switches/ { x = $1 }
    END { printf "%-40s %d clients %s: fdatasync/put %.3f sendto/put %.3f context switches/put %.3f\n",
      b, c, r, f / n, s / n, x / n }' "$d/stat.txt"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$d"
}

for _ in $(seq "$ROUNDS"); do
  for b in "$@"; do one "$b"; done
done
