#!/usr/bin/env bash
# Selective searches at scale: `hyperdex search-bench` on a local cluster (a coordinator and 3
# daemons, tolerate 1) loads N objects and times equality and range searches through
# secondary indexes against the same searches on unindexed copies of the attributes; then
# PostgreSQL (Debian's package, one server on this machine) gets the same rows, B-tree indexes
# on the same columns, and the same queries with the same values, timed by psql.
#
#   scripts/search-bench.sh                 # N=1000000, REPEAT=20
#   N=100000 REPEAT=10 scripts/search-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000000}"
REPEAT="${REPEAT:-20}"
PGPORT="${PGPORT:-5439}"

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PGBIN" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
cargo build --release --quiet
B=$PWD/target/release/hyperdex
WORK=$(mktemp -d /tmp/hyperdex-search-bench.XXXXXX)
chmod 777 "$WORK"
cleanup() {
  su postgres -c "$PGBIN/pg_ctl -D $WORK/pg -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "== hyperdex ($N objects)"
"$B" search-bench --local --records "$N" --repeat "$REPEAT"

echo "== PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') ($N rows)"
su postgres -c "$PGBIN/initdb -D $WORK/pg -A trust" >/dev/null
su postgres -c "$PGBIN/pg_ctl -D $WORK/pg -o '-p $PGPORT -k $WORK -c listen_addresses=' -l $WORK/pg.log start -w" >/dev/null
sql() { su postgres -c "psql -q -X -h $WORK -p $PGPORT -d postgres -v ON_ERROR_STOP=1" ; }
START=$(date +%s.%N)
sql <<EOF
CREATE TABLE searchbench (k text PRIMARY KEY, cat text, num bigint, pad text, catx text, numx bigint);
INSERT INTO searchbench
  SELECT 'user' || lpad(i::text, 10, '0'),
         'c' || lpad(((i::numeric * 11400714819323198485) % 18446744073709551616 % 10000)::text, 5, '0'),
         (i::numeric * 2654435761 % $N)::bigint,
         repeat('p', 100), NULL, NULL
  FROM generate_series(0, $N - 1) AS i;
UPDATE searchbench SET catx = cat, numx = num;
CREATE INDEX ON searchbench (cat);
CREATE INDEX ON searchbench (num);
VACUUM ANALYZE searchbench;
EOF
printf 'loaded %s rows in %.1f s (one INSERT ... SELECT, then the copies and indexes)\n' "$N" "$(echo "$(date +%s.%N) - $START" | bc)"

# The same values as hyperdex search-bench: category (r * 37) mod 10000; numbers from r * (N / REPEAT).
time_query() { # name query-template
  local name=$1 template=$2 times=()
  for r in $(seq 0 $((REPEAT - 1))); do
    local cat lo q
    cat=$(printf 'c%05d' $(( (r * 37) % 10000 )))
    lo=$(( r * (N / REPEAT) ))
    q=${template//CAT/$cat}
    q=${q//LO/$lo}
    q=${q//HI/$((lo + 99))}
    times+=("$(printf '\\timing on\n%s;\n' "$q" | sql | grep '^Time:' | awk '{print $2}')")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk -v name="$name" '{a[NR]=$1} END {printf "%-36s %9.2f %9.2f\n", name, a[int((NR+1)/2)], a[int(NR*0.9+0.5)]}'
}
echo "query                                median ms    p90 ms"
Q="SELECT * FROM searchbench WHERE"
time_query "equality, B-tree index (cat)" "$Q cat = 'CAT'"
time_query "equality, no index (catx)" "$Q catx = 'CAT'"
time_query "range of 100, B-tree index (num)" "$Q num BETWEEN LO AND HI"
time_query "range of 100, no index (numx)" "$Q numx BETWEEN LO AND HI"
time_query "count of everything" "SELECT count(*) FROM searchbench"
