#!/usr/bin/env bash
# A routine restart at scale: loads N objects of 100 bytes into a 3-daemon cluster
# (tolerate 1), SIGKILLs one daemon, restarts it (on its data directory, or on an empty one
# with WIPE=1) under a light write load, and reports how long until the cluster is stable,
# every daemon's peak RSS, whether any other server was declared failed, whether any
# acknowledged write was lost, client latency (YCSB-B: 95% reads, 4 clients) before and
# during the rejoin, and how much the rejoin sent whole (objects the restarted daemon still
# held unchanged cross as digests).
#
# RUNS lists the restarts to make, one after the other on the same data: DOWN:WIPE pairs
# (seconds the daemon stays down, and 1 to delete its data directory first).
#
#   scripts/restart-at-scale.sh                 # N=1000000, RUNS="1:0" (1 s down, data kept)
#   N=200000 RUNS="1:0 60:0 1:1" scripts/restart-at-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000000}"
RUNS="${RUNS:-${DOWN:-1}:${WIPE:-0}}"
PORT="${PORT:-19820}"
cargo build --release --quiet
BIN=$PWD/target/release/hyperdex
DIR=$(mktemp -d /tmp/hyperdex-restart.XXXXXX)
PIDS=()
cleanup() {
  kill "${PIDS[@]}" "${WRITER:-}" "${SAMPLER:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

start_daemon() { # index
  mkdir -p "$DIR/d$1"
  "$BIN" daemon -f -D "$DIR/d$1" -p $((PORT + 10 + $1)) -P "$PORT" >>"$DIR/d$1.log" 2>&1 &
  DAEMON[$1]=$!
}

mkdir -p "$DIR/c"
"$BIN" coordinator -f -D "$DIR/c" -p "$PORT" >"$DIR/c.log" 2>&1 &
PIDS+=($!)
declare -a DAEMON
for i in 1 2 3; do start_daemon $i; PIDS+=("${DAEMON[$i]}"); done
for _ in $(seq 100); do
  [ "$("$BIN" show-config -p "$PORT" 2>/dev/null | grep -c AVAILABLE)" -ge 3 ] && break
  sleep 0.2
done

echo "== load $N objects"
t0=$(date +%s.%N)
"$BIN" bench --port "$PORT" --workload put --records "$N" --ops 1 --fields 1 \
  --value-size 100 --clients 16 --window 16 --quiet >"$DIR/bench.txt"
t1=$(date +%s.%N)
echo "load: $(echo "$t1 - $t0" | bc) s"
for i in 1 2 3; do
  echo "daemon$i: disk $(du -sm "$DIR/d$i" | cut -f1) MB, RSS $(($(ps -o rss= -p "${DAEMON[$i]}") / 1024)) MB"
done
t0=$(date +%s.%N)
echo "count: $("$BIN" count -p "$PORT" bench) objects in $(echo "$(date +%s.%N) - $t0" | bc) s"
OPS="${OPS:-20000}"
latency() { # label json
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
g = r["per_op"].get("read") or next(iter(r["per_op"].values()))
print("%s: %.0f ops/s, read p50 %d us, p99 %d us, p99.9 %d us, errors %d"
      % (sys.argv[1], r["ops_per_sec"], g["p50_us"], g["p99_us"], g["p999_us"], r["errors"]))
PY
}
ycsb_b() { # json
  "$BIN" bench --port "$PORT" --existing --workload b --records "$N" --fields 1 \
    --value-size 100 --clients 4 --ops "$OPS" --json "$1" --quiet >/dev/null
}
ycsb_b "$DIR/before.json"
latency "client latency before" "$DIR/before.json"

restart() { # down wipe
  DOWN=$1 WIPE=$2
  : >"$DIR/acked"
  touch "$DIR/d2.log"
  local failed0 log0
  failed0=$(grep -hc "declaring the server failed" "$DIR/c.log" || true)
  log0=$(wc -l <"$DIR/d2.log")
  echo "== SIGKILL daemon2, down $DOWN s, wipe=$WIPE"
  kill -9 "${DAEMON[2]}"
  # A light write load throughout: one put at a time, each key recorded once acknowledged.
  ( i=0
    while :; do
      i=$((i + 1))
      if "$BIN" put -p "$PORT" bench "w$i" '{"f0": "restart"}' >/dev/null 2>&1; then
        echo "w$i" >>"$DIR/acked"
      fi
      sleep 0.05
    done ) &
  WRITER=$!
  sleep "$DOWN"
  [ "$WIPE" = 1 ] && rm -rf "$DIR/d2"
  start_daemon 2
  PIDS+=("${DAEMON[2]}")
  restarted=$(date +%s.%N)
  # Peak RSS of every daemon, sampled twice a second.
  ( declare -A peak
    while :; do
      for i in 1 2 3; do
        r=$(ps -o rss= -p "${DAEMON[$i]}" 2>/dev/null || echo 0)
        [ "${r:-0}" -gt "${peak[$i]:-0}" ] && peak[$i]=$r
      done
      echo "${peak[1]:-0} ${peak[2]:-0} ${peak[3]:-0}" >"$DIR/peak"
      sleep 0.5
    done ) &
  SAMPLER=$!
  ycsb_b "$DIR/during.json" &
  BENCH=$!
  # Rejoined: the restarted daemon has registered and is AVAILABLE, no region is being filled by state
  # transfer (its own joins, and any the coordinator started while it was away), and
  # wait-until-stable agrees.
  local addr2="127.0.0.1:$((PORT + 12))" rejoined=""
  for _ in $(seq 1200); do
    cfg=$("$BIN" show-config -p "$PORT" 2>/dev/null || true)
    if tail -n +$((log0 + 1)) "$DIR/d2.log" | grep -q "daemon registered" &&
      grep -q "$addr2 AVAILABLE" <<<"$cfg" && ! grep -q "joining by state transfer" <<<"$cfg" &&
      "$BIN" wait-until-stable -p "$PORT" --timeout 1 >/dev/null 2>&1; then
      rejoined=$(date +%s.%N)
      break
    fi
    sleep 0.5
  done
  if [ -n "$rejoined" ]; then
    echo "rejoined and stable $(echo "$rejoined - $restarted" | bc) s after the restart"
  else
    echo "NOT rejoined within 600 s of the restart"
  fi
  tail -n +$((log0 + 1)) "$DIR/d2.log" | sed 's/\x1b\[[0-9;]*m//g' | grep -o "data directory opened.*millis=[0-9]*" |
    sed 's/.*millis=/data directory opened in /; s/$/ ms/' || true
  wait "$BENCH"
  latency "client latency from the restart on ($OPS operations)" "$DIR/during.json"
  kill "$WRITER" "$SAMPLER" 2>/dev/null || true
  wait "$WRITER" "$SAMPLER" 2>/dev/null || true
  read -r p1 p2 p3 <"$DIR/peak"
  echo "peak RSS: daemon1 $((p1 / 1024)) MB, daemon2 $((p2 / 1024)) MB, daemon3 $((p3 / 1024)) MB"
  failed=$(grep -hc "declaring the server failed" "$DIR/c.log" || true)
  echo "servers declared failed (the coordinator's log): $((failed - failed0))"
  lost=0
  while read -r k; do
    "$BIN" get -p "$PORT" bench "$k" 2>/dev/null | grep -q restart || lost=$((lost + 1))
  done <"$DIR/acked"
  echo "acknowledged writes during the restart: $(wc -l <"$DIR/acked"), lost: $lost"
  echo "count after: $("$BIN" count -p "$PORT" bench)"
  tail -n +$((log0 + 1)) "$DIR/d2.log" | sed 's/\x1b\[[0-9;]*m//g' | grep "state transfer complete" |
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "=")
             if (kv[1] == "objects") o += kv[2]; if (kv[1] == "whole_bytes") b += kv[2] } }
         END { printf "rejoin: %d regions, %d objects compared, %.1f MB sent whole\n", NR, o, b / 1e6 }'
}

for run in $RUNS; do restart "${run%%:*}" "${run##*:}"; done
