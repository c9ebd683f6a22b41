#!/usr/bin/env python3
"""What writing a file the size of Adult's diagnostics.parquet costs on this machine's disk,
without any Parquet encoding: the floor under `timing_s.diagnostics_output`.

Writes N bytes of random data to a temporary name in DIR and renames it into place, 20 times each
way, and prints the best times (ms):
  - into a fresh name (nothing replaced);
  - over the previous file (the old file's page cache is freed by the rename);
  - as the second, plus an fsync before the rename (what `diagnose` does).
docs/PERFORMANCE.md quotes its output ("The writer", under the diagnostics benchmark).

  python3 scripts/write_cost.py [DIR] [N]      (defaults: a new temporary dir, 2,400,000 bytes)
"""
import os
import sys
import tempfile
import time


def best(f, reps=20):
    ts = []
    for _ in range(reps):
        ts.append(f())
    ts.sort()
    return ts[0] * 1e3, ts[len(ts) // 2] * 1e3


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="write_cost-")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2_400_000
    buf = os.urandom(n)
    tmp, dst = os.path.join(d, ".t.tmp"), os.path.join(d, "t.bin")

    def write(replace, sync):
        if not replace and os.path.exists(dst):
            os.unlink(dst)
        t0 = time.perf_counter()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, buf)
        if sync:
            os.fsync(fd)
        os.close(fd)
        os.rename(tmp, dst)
        return time.perf_counter() - t0

    for label, replace, sync in [("fresh name", False, False), ("over the previous file", True, False),
                                 ("over the previous file, with fsync", True, True)]:
        b, m = best(lambda: write(replace, sync))
        print(f"{n:,} bytes, {label}: best {b:.2f} ms, median {m:.2f} ms")


if __name__ == "__main__":
    main()
