#!/usr/bin/env bash
# User-space instructions per operation of hyperdex builds: `hyperdex bench --local` (a
# coordinator and 3 daemons, tolerate 1, in the load generator's process) under
# `valgrind --tool=callgrind`, run with MANY and with FEW operations of one client; the
# difference over MANY - FEW is what one operation costs the whole cluster and its client,
# loading and start-up cancelled out. Instruction counts do not move with the machine's
# load the way wall and CPU time do; the kernel's work (fsync, loopback TCP, wake-ups) is
# not in them. `--timing-scale 20` slows heartbeats, leases and ticks so that the cluster,
# slowed down by valgrind, neither fails over nor wakes its timers often.
#
#   scripts/instructions-per-op.sh OLD_BINARY NEW_BINARY
#   WORKLOAD=get RECORDS=10000 scripts/instructions-per-op.sh target/release/hyperdex
set -euo pipefail
WORKLOAD=${WORKLOAD:-put}
RECORDS=${RECORDS:-10000}
FEW=${FEW:-1001}
MANY=${MANY:-3001}
[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }

count() { # binary ops
  local data out
  data=$(mktemp -d /tmp/hyperdex-instr.XXXXXX)
  out=$(cd "$data" && valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$1" bench --local --timing-scale 20 --records "$RECORDS" --fields 1 --value-size 100 \
    --workload "$WORKLOAD" --clients 1 --ops "$2" 2>&1 >/dev/null)
  rm -rf "$data"
  echo "$out" | awk '/Collected :/ {print $NF}'
}

for b in "$@"; do
  few=$(count "$b" "$FEW")
  many=$(count "$b" "$MANY")
  awk -v b="$b" -v w="$WORKLOAD" -v f="$few" -v m="$many" -v n="$((MANY - FEW))" \
    'BEGIN { printf "%-40s %s: %.1fk instructions per operation\n", b, w, (m - f) / n / 1000 }'
done
