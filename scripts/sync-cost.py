#!/usr/bin/env python3
"""The cost of one durable log record on this machine's disk, as the write-ahead log pays it.

Writes N records of 150 bytes, each followed by fdatasync, twice per round: appended to the
end of a file (each sync must also write the file's new size), and written over zeros the
file already holds (how `storage::log_file` writes them). Prints the median, 95th percentile
and mean of the syncs, in microseconds.

Then the same records over zeros in 1 and in 2 processes at once, each with a file of its
own, as the daemons of a chain on one machine write their logs: the syncs per second of all
of them together, and each one's median. Where the disk takes one flush at a time, two
processes sync no more often than one and each sync takes about twice as long: a write that
needs a sync at two daemons of one disk then waits for two syncs, however they overlap.

    scripts/sync-cost.py [DIR] [N]      # DIR: where the data directory would be (default /tmp)
"""
import multiprocessing
import os
import statistics
import sys
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
RECORD = b"x" * 150


def run(grown, ready=None):
    """Syncs N records; returns the p50, p95 and mean of the syncs and when the loop of
    syncs began and ended (`time.monotonic`). `ready`: a barrier to pass before the loop."""
    path = os.path.join(DIR, "hyperdex-sync-cost.%d" % os.getpid())
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        if grown:
            os.write(fd, b"\0" * (N * len(RECORD) + 4096))
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        if ready is not None:
            ready.wait()
        took = []
        began = time.monotonic()
        for _ in range(N):
            os.write(fd, RECORD)
            start = time.perf_counter()
            os.fdatasync(fd)
            took.append((time.perf_counter() - start) * 1e6)
        ended = time.monotonic()
    finally:
        os.close(fd)
        os.remove(path)
    took.sort()
    return took[len(took) // 2], took[len(took) * 95 // 100], statistics.mean(took), began, ended


def one(ready, results):
    p50, _, _, began, ended = run(True, ready)
    results.put((p50, began, ended))


def at_once(procs):
    """Syncs from `procs` processes at once (their loops start together): syncs per second
    in all, from the first loop's start to the last one's end, and each one's median."""
    ctx = multiprocessing.get_context("fork")
    ready, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=one, args=(ready, results)) for _ in range(procs)]
    for w in workers:
        w.start()
    got = [results.get() for _ in workers]
    for w in workers:
        w.join()
    span = max(g[2] for g in got) - min(g[1] for g in got)
    return procs * N / span, [g[0] for g in got]


def main():
    for _ in range(2):
        for grown, label in [(False, "appended"), (True, "over zeros")]:
            p50, p95, mean, _, _ = run(grown)
            print("%-10s fdatasync p50 %6.1f us  p95 %6.1f us  mean %6.1f us" % (label, p50, p95, mean))
    for _ in range(2):
        for procs in (1, 2):
            rate, medians = at_once(procs)
            print("%d process(es) at once: %6.0f syncs/s in all, each p50 %s us" % (
                procs, rate, " / ".join("%.1f" % m for m in medians)))


if __name__ == "__main__":
    main()
