"""Benchmark: what the operation lock kept in the cluster adds to a mutating task.

An empty journaled operation (`journal.operation` with nothing inside: lock, journal records,
release) on the lab's DB cluster, with the lock kept in the cluster (CIB + a file on each DB
host) and with the local lock only; warm ssh connections, as inside one task. Prints the median
of each and the difference: the acquire + release overhead. Asserts nothing.

    HATASKS_LAB=N .venv/bin/python bench/lock.py [--rounds 10] [--cluster db]
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def context(state_dir, cluster_state):
    from hatasks.config import make_context

    n = int(os.environ.get("HATASKS_LAB", "0"))
    inv = ROOT / "hosts.ini" if n == 0 else ROOT / "lab" / ".state" / str(n) / "hosts.ini"
    return make_context(inventory=str(inv), state_dir=state_dir, cluster_state=cluster_state)


def once(ctx, cluster):
    from hatasks import journal

    began = time.perf_counter()
    with journal.operation(ctx, cluster, "bench.lock", {}, yes=True):
        pass
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--cluster", default="db")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local = context(os.path.join(tmp, "local"), False)
        shared = context(os.path.join(tmp, "shared"), True)
        once(shared, args.cluster)          # warm the ssh connections
        times = {"local": [], "cluster": []}
        for _ in range(args.rounds):
            times["local"].append(once(local, args.cluster))
            times["cluster"].append(once(shared, args.cluster))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"operation lock, {args.rounds} rounds on cluster {args.cluster}: "
          f"local only {med['local'] * 1000:.1f} ms, kept in the cluster "
          f"{med['cluster'] * 1000:.1f} ms; acquire + release overhead "
          f"{(med['cluster'] - med['local']) * 1000:.1f} ms per mutating task")


if __name__ == "__main__":
    main()
