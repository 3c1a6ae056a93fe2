#!/usr/bin/env bash
# Runs the same workload shapes against hyperdex (`hyperdex local`: a coordinator and 3
# daemons, tolerate 1), Redis with `appendfsync always` (acknowledges after fsync, like
# hyperdex), Redis without persistence, and a 3-member etcd cluster, each in processes of its
# own on this machine's loopback, one after the other, with one load generator
# (`hyperdex bench`), and writes the table and the ratios the write path is held to to
# docs/benchmarks-comparison.md.
#
# RECORDS (default 10000) keys of 100 bytes; ROUNDS (default 1) repeats every cell and keeps
# the median; SCALE (default 3) multiplies the operations of every cell but etcd's (a cell of
# hyperdex or Redis then lasts about 1 to 4 s). Installs redis-server, etcd-server and
# etcd-client from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-10000}
ROUNDS=${ROUNDS:-1}
SCALE=${SCALE:-3}

if ! command -v redis-server >/dev/null || ! command -v etcd >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server etcd-server etcd-client >/dev/null
fi
cargo build --release --quiet
B=target/release/hyperdex
WORK=$(mktemp -d /tmp/hyperdex-compare.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The cluster runs in a process of its own, as the peers do (not in the load generator's).
"$B" local --port 1991 --data "$WORK/hyperdex" >"$WORK/hyperdex.log" 2>&1 &
PIDS+=($!)
redis-server --port 6399 --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/redis-always"
redis-server --port 6398 --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
  --dir "$WORK/redis-always" >"$WORK/redis-always.log" 2>&1 &
PIDS+=($!)
CLUSTER="m1=http://127.0.0.1:12380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
for i in 1 2 3; do
  etcd --name "m$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:${i}2379" --advertise-client-urls "http://127.0.0.1:${i}2379" \
    --listen-peer-urls "http://127.0.0.1:${i}2380" --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new >"$WORK/etcd$i.log" 2>&1 &
  PIDS+=($!)
done
ETCD=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
for _ in $(seq 100); do
  if ETCDCTL_API=3 etcdctl --endpoints="$ETCD" endpoint health >/dev/null 2>&1 \
    && "$B" wait-until-stable --port 1991 >/dev/null 2>&1 \
    && redis-cli -p 6399 ping >/dev/null 2>&1 && redis-cli -p 6398 ping >/dev/null 2>&1; then break; fi
  sleep 0.2
done

declare -A LOADED
run() { # name target round extra-args...
  local name=$1 target=$2 round=$3; shift 3
  local addr="" existing=""
  case $target in
    redis) addr="--address 127.0.0.1:6399" ;;
    redis-always) addr="--address 127.0.0.1:6398" ;;
    etcd) addr="--address $ETCD" ;;
    hyperdex) addr="--port 1991" ;;
  esac
  # Every cell but etcd's runs SCALE times the operations given.
  if [[ $target != etcd ]]; then
    local a=() x prev=""
    for x in "$@"; do
      if [[ $prev == --ops ]]; then x=$((x * SCALE)); fi
      a+=("$x")
      prev=$x
    done
    set -- "${a[@]}"
  fi
  # A peer keeps its data between runs: load it once.
  if [[ $target != hyperdex && -n ${LOADED[$target]:-} ]]; then existing="--existing"; fi
  LOADED[$target]=1
  echo "== $name on $target (round $round)" >&2
  local peer=$target
  [[ $target == redis-always ]] && peer=redis
  # shellcheck disable=SC2086
  "$B" bench --quiet --target "$peer" $addr $existing --records "${REC:-$RECORDS}" --fields 1 --value-size 100 \
    --json "$WORK/$name-$target-$round.json" "$@" >&2
}

for round in $(seq "$ROUNDS"); do
  for t in hyperdex redis-always redis etcd; do
    run put64 "$t" "$round" --workload put --clients 64 --ops 20000
    run put1 "$t" "$round" --workload put --clients 1 --ops 2000
    run get64 "$t" "$round" --workload get --clients 64 --ops 40000
    run get1 "$t" "$round" --workload get --clients 1 --ops 5000
  done
  # One hot counter: hyperdex's atomic_add, Redis's INCR, etcd's compare-and-swap loop.
  REC=1 run hot64 hyperdex "$round" --workload atomic-add --clients 64 --ops 10000
  REC=1 run hot64 redis-always "$round" --workload atomic-add --clients 64 --ops 10000
  REC=1 run hot64 etcd "$round" --workload atomic-add --clients 64 --ops 1000
  # cond_put against a put cell run just before it, not the round's first put cell: the
  # first cell on a cluster has run faster than later ones (alternated put and cond_put
  # cells on one cluster: the first pair's ratio lowest), whichever the operation.
  run putnext64 hyperdex "$round" --workload put --clients 64 --ops 20000
  run condput64 hyperdex "$round" --workload cond-put --clients 64 --ops 20000
  run window64 hyperdex "$round" --workload put --clients 1 --window 64 --ops 20000
done
# The plot: latency percentiles and throughput over time of YCSB A on hyperdex.
"$B" bench --quiet --port 1991 --workload a --clients 64 --ops 40000 --records 1000 --fields 1 --svg docs/bench-ycsb-a.svg >&2

python3 - "$WORK" "$ROUNDS" "$RECORDS" <<'PY' > docs/benchmarks-comparison.md
import json, os, platform, statistics, subprocess, sys
work, rounds, records = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def runs(name, target):
    out = []
    for i in range(1, rounds + 1):
        with open(os.path.join(work, "%s-%s-%d.json" % (name, target, i))) as f:
            out.append(json.load(f))
    return out
def ops(name, target):
    return statistics.median(r["ops_per_sec"] for r in runs(name, target))
def p50(name, target):
    vals = [s["p50_us"] for r in runs(name, target) for s in r["per_op"].values()]
    return statistics.median(vals) if vals else 0
def ver(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except Exception:
        return "?"
T = ["hyperdex", "redis-always", "redis", "etcd"]
print("# Benchmarks: hyperdex, Redis and etcd on one machine\n")
print("Generated by `scripts/compare.sh` (one load generator, `hyperdex bench`, run against each")
print("store in turn, each in processes of its own, on loopback; %d records of 100 bytes, uniform keys; median of %d round(s))." % (records, rounds))
print("Machine: %s, %d cores. Versions: `%s`; `%s`; `%s`.\n" % (platform.machine(), os.cpu_count(),
      ver(["target/release/hyperdex", "--version"]), ver(["redis-server", "--version"]), ver(["etcd", "--version"])))
print("Durability: hyperdex answers a write once both daemons of its chain have it on disk")
print("(`tolerate 1 failure`, fdatasync of the write-ahead log on each); Redis `appendfsync always`")
print("once its append-only file is fsynced (one copy, no replica); Redis without persistence from")
print("memory; etcd once a majority of 3 members has its log entry on disk.\n")
print("| shape | hyperdex | Redis, appendfsync always | Redis, no persistence | etcd, 3 members |")
print("|---|---|---|---|---|")
for name, label in [("put64", "put, 64 clients"), ("put1", "put, 1 client"), ("get64", "get, 64 clients"),
                    ("get1", "get, 1 client"), ("hot64", "one hot counter (atomic_add / INCR / CAS loop), 64 clients")]:
    cells = []
    for t in T:
        try:
            cells.append("%.0f ops/s, p50 %d µs" % (ops(name, t), p50(name, t)))
        except FileNotFoundError:
            cells.append("–")
    print("| %s | %s |" % (label, " | ".join(cells)))
targets = [
    ("put at 64 clients ≥ 1.0× Redis appendfsync always", ops("put64", "hyperdex") / ops("put64", "redis-always"), 1.0, True),
    ("put at 64 clients ≥ 5× etcd", ops("put64", "hyperdex") / ops("put64", "etcd"), 5.0, True),
    ("put at 1 client, p50 ≤ 1.5× Redis appendfsync always", p50("put1", "hyperdex") / max(1, p50("put1", "redis-always")), 1.5, False),
    ("get at 64 clients ≥ 0.7× Redis without persistence", ops("get64", "hyperdex") / ops("get64", "redis"), 0.7, True),
    ("get at 1 client, p50 ≤ 1.2× Redis without persistence", p50("get1", "hyperdex") / max(1, p50("get1", "redis")), 1.2, False),
    ("atomic_add on one hot key at 64 clients ≥ 50× etcd's CAS loop", ops("hot64", "hyperdex") / ops("hot64", "etcd"), 50.0, True),
    ("cond_put ≥ 0.95× put (64 clients, the put cell just before it)", ops("condput64", "hyperdex") / ops("putnext64", "hyperdex"), 0.95, True),
    ("one client with 64 puts outstanding ≥ 10× a synchronous one", ops("window64", "hyperdex") / ops("put1", "hyperdex"), 10.0, True),
]
print("\nhyperdex's put at 64 clients run again just before its cond_put cell: %.0f ops/s, p50 %d µs;\n"
      "cond_put: %.0f ops/s, p50 %d µs." % (
      ops("putnext64", "hyperdex"), p50("putnext64", "hyperdex"), ops("condput64", "hyperdex"), p50("condput64", "hyperdex")))
print("\n| target | measured | met |\n|---|---|---|")
for label, v, goal, at_least in targets:
    met = v >= goal if at_least else v <= goal
    print("| %s | %.2f | %s |" % (label, v, "yes" if met else "no"))
PY
echo "wrote docs/benchmarks-comparison.md" >&2
