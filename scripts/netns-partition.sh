#!/usr/bin/env bash
# A real-process partition test across network namespaces (needs root and iproute2): a
# coordinator and three daemons (tolerate 1), each in a network namespace of its own, joined
# by veth pairs to a bridge, and a client in another namespace (scripts/netns_client.py, the
# Python package, one writer per key checking every read). Under that load, daemon 2's link
# goes down (ip link set eth0 down in its namespace) for CUT seconds, then comes back. The
# client reports how long writes stopped, and any stale read or acknowledged write lost (the
# script fails if there is one); the script also checks that the cut daemon was declared
# failed and rejoined.
#
#   make netns          # builds the binary and the Python package first
#   CUT=8 SECONDS_OF_LOAD=25 scripts/netns-partition.sh
#   scripts/netns-partition.sh --or-skip   # (make test) skips, saying why, on a machine that
#                                          # cannot create namespaces, veth pairs or bridges
set -euo pipefail
cd "$(dirname "$0")/.."
CUT="${CUT:-8}"
LOAD="${SECONDS_OF_LOAD:-25}"
BIN=$PWD/target/debug/hyperdex
PY=$PWD/target/pyenv/bin/python
[ -x "$BIN" ] && [ -x "$PY" ] || { echo "run make netns (it builds $BIN and $PY)"; exit 2; }
WORK=$(mktemp -d /tmp/hyperdex-netns.XXXXXX)
NS=(hdc hdd1 hdd2 hdd3 hdcl)
IPS=(10.77.0.10 10.77.0.11 10.77.0.12 10.77.0.13 10.77.0.20)
PIDS=()
cleanup_links() {
  for n in "${NS[@]}"; do
    ip link del "v$n" 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
  ip link del hdbr 2>/dev/null || true
}
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  cleanup_links
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
fail() { echo "$1"; for f in "$WORK"/*.log; do echo "== $f"; tail -5 "$f"; done; exit 1; }

setup() {
  command -v ip >/dev/null || { echo "no ip command (iproute2)"; return 1; }
  [ "$(id -u)" = 0 ] || { echo "not root"; return 1; }
  cleanup_links  # what an interrupted run left
  ip link add hdbr type bridge || return 1
  ip link set hdbr up || return 1
  for i in "${!NS[@]}"; do
    n=${NS[$i]}
    ip netns add "$n" || return 1
    ip link add "v$n" type veth peer name eth0 netns "$n" || return 1
    ip link set "v$n" master hdbr up || return 1
    ip netns exec "$n" ip addr add "${IPS[$i]}/24" dev eth0 || return 1
    ip netns exec "$n" ip link set eth0 up || return 1
    ip netns exec "$n" ip link set lo up || return 1
  done
}
if ! why=$(setup 2>&1); then
  if [ "${1:-}" = "--or-skip" ]; then
    echo "netns partition test skipped: this machine cannot set up network namespaces: ${why:-unknown error}"
    exit 0
  fi
  echo "cannot set up network namespaces: $why"
  exit 2
fi
C=${IPS[0]}
(umask 077; head -c 32 /dev/urandom | base64 >"$WORK/secret")
export HYPERDEX_CLUSTER_SECRET_FILE=$WORK/secret
ip netns exec hdc "$BIN" coordinator -f -l "$C" -p 1982 -D "$WORK/c" >"$WORK/c.log" 2>&1 &
PIDS+=($!)
sleep 1
for d in 1 2 3; do
  ip netns exec "hdd$d" "$BIN" daemon -f -l "${IPS[$d]}" -p 2012 -c "$C" -P 1982 -D "$WORK/d$d" \
    >"$WORK/d$d.log" 2>&1 &
  PIDS+=($!)
done
admin() { ip netns exec hdcl "$BIN" "$@" --host "$C" -p 1982; }
for _ in $(seq 50); do
  [ "$(admin show-config 2>/dev/null | grep -c AVAILABLE)" -ge 3 ] && break
  sleep 0.2
done
echo "space kv key k attributes int v create 16 partitions tolerate 1 failure" | admin add-space || fail "add-space failed"
admin wait-until-stable >/dev/null

ip netns exec hdcl "$PY" scripts/netns_client.py "$C" 1982 "$LOAD" >"$WORK/client.out" 2>&1 &
CLIENT=$!
sleep 6
echo "cutting daemon 2's link for $CUT s"
ip netns exec hdd2 ip link set eth0 down
sleep "$CUT"
# Captured first: `grep -q` closing the pipe early would fail the pipeline (pipefail).
config=$(admin show-config)
grep -q "10.77.0.12:2012 FAILED" <<<"$config" && echo "daemon 2 was declared failed" \
  || { echo "daemon 2 was not declared failed"; echo "$config"; exit 1; }
ip netns exec hdd2 ip link set eth0 up
echo "link back"
status=0
wait "$CLIENT" || status=$?
cat "$WORK/client.out"
admin wait-until-stable --timeout 60 >/dev/null && echo "stable again: daemon 2 rejoined" \
  || { echo "not stable after 60 s"; status=1; }
admin show-config | grep "10.77.0.12:2012"
exit $status
