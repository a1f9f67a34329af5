"""Benchmark: `inv status` (all hosts asked in parallel) vs the same facts asked host after host.

Both sides run as fresh processes (cold ssh connections, as an operator gets them), alternated
round after round on the same machine so that noise hits both alike. Prints each side's median
and the ratio parallel/sequential (target: at most 0.5). Asserts nothing.

    .venv/bin/python bench/status.py [--rounds 5]

The sequential side (`--one sequential`) collects exactly the facts `status` shows: crm_mon of
each cluster, SHOW pool_nodes through the VIP, and a direct connection to each backend, one
host after another.
"""

import argparse
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sequential_once(ctx=None):
    from hatasks import backends, crm, hb, pg, remote
    from hatasks.config import make_context

    ctx = ctx or make_context()
    inv = remote.inventory(ctx)
    facts = {}
    for name in hb.cluster_names(inv):
        c = inv.cluster(name)
        facts[(name, "hb")] = crm.crm_status(ctx, name)
        if c.kind == "db":
            facts[(name, "pgpool")] = backends.read_pool_nodes(ctx, name)
            for h in c.hosts:
                facts[(name, "pg", h.name)] = pg.backend_info(ctx, h.name)
    return facts


def timed(cmd):
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"bench/status: {' '.join(cmd)} failed ({proc.returncode}):\n"
                 f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--one", choices=["sequential"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        sequential_once()
        return
    venv_bin = pathlib.Path(sys.executable).parent
    parallel_cmd = [str(venv_bin / "inv"), "status", "--format", "json"]
    sequential_cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--one", "sequential"]
    par, seq = [], []
    for i in range(args.rounds):
        # alternate which side goes first
        if i % 2 == 0:
            par.append(timed(parallel_cmd))
            seq.append(timed(sequential_cmd))
        else:
            seq.append(timed(sequential_cmd))
            par.append(timed(parallel_cmd))
        print(f"round {i + 1}: inv status {par[-1]:.3f} s   host after host {seq[-1]:.3f} s",
              flush=True)
    mp, ms = statistics.median(par), statistics.median(seq)
    print(f"median: inv status {mp:.3f} s, host after host {ms:.3f} s")
    print(f"end to end (process start included): ratio parallel/sequential = {mp / ms:.2f} "
          f"(target <= 0.5)")

    # the collection alone, in this process, every round with cold ssh connections
    from hatasks import remote, status
    from hatasks.config import make_context

    ctx = make_context()
    cpar, cseq = [], []
    for i in range(args.rounds):
        for side in ((0, 1) if i % 2 == 0 else (1, 0)):
            remote.close_all()
            start = time.monotonic()
            if side == 0:
                data = status.collect(ctx)
                cpar.append(time.monotonic() - start)
            else:
                sequential_once(ctx)
                cseq.append(time.monotonic() - start)
        if not data["healthy"]:
            print(f"  (round {i + 1}: cluster not healthy: {data['problems']})")
    mcp, mcs = statistics.median(cpar), statistics.median(cseq)
    print(f"collection only (cold connections, in process): parallel {mcp:.3f} s, host after host "
          f"{mcs:.3f} s, ratio = {mcp / mcs:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
