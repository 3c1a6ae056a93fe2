"""The client of scripts/netns-partition.sh: one writer per key, checked as it goes.

Writes increasing values to keys k0..k49 in turn (each key has this one writer) and, after
each write, reads another key. Checks:
- no stale read: a read returns at least the last value acknowledged for that key before the
  read began (and never a value not yet written);
- nothing acknowledged lost: at the end, every key holds its last acknowledged value, or a
  later one whose write had an unknown outcome;
and reports the longest time writes did not succeed (the failover) and the counts.

Usage: python netns_client.py HOST PORT SECONDS
"""

import sys
import time

from hyperdex.client import Client, HyperDexClientException

KEYS = 50


def main():
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    c = Client(host, port, timeout=5.0)
    acked = {}  # key -> last acknowledged value
    tried = {}  # key -> highest value written, acknowledged or not
    problems = []
    ok = failed = reads = 0
    last_ok = time.time()
    longest_gap = 0.0
    start = time.time()
    i = 0
    while time.time() - start < seconds:
        key = "k%d" % (i % KEYS)
        value = i
        tried[key] = value
        try:
            c.put("kv", key, {"v": value})
            acked[key] = value
            ok += 1
            now = time.time()
            longest_gap = max(longest_gap, now - last_ok)
            last_ok = now
        except HyperDexClientException:
            failed += 1
        other = "k%d" % ((i * 7 + 3) % KEYS)
        floor = acked.get(other, -1)
        try:
            got = c.get("kv", other)
            reads += 1
            v = -1 if got is None else got["v"]
            if v < floor:
                problems.append("stale read of %s: %d, %d was acknowledged" % (other, v, floor))
            if v > tried.get(other, -1):
                problems.append("read of %s returned %d, never written" % (other, v))
        except HyperDexClientException:
            pass
        i += 1
    final = Client(host, port, timeout=30.0)
    for key, value in acked.items():
        got = final.get("kv", key)
        v = -1 if got is None else got["v"]
        if v < value or v > tried[key]:
            problems.append("lost: %s holds %d, %d was acknowledged" % (key, v, value))
    if ok < 100:
        problems.append("only %d writes acknowledged in %.0f s" % (ok, seconds))
    print("writes acknowledged %d, failed or unknown %d, reads %d" % (ok, failed, reads))
    print("longest time without a successful write: %.2f s" % longest_gap)
    for p in problems[:20]:
        print("VIOLATION: " + p)
    print("violations: %d" % len(problems))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
