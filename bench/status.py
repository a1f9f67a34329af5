"""Benchmark: `inv status` (all hosts asked in parallel) vs the same facts asked host after host.

Both sides run as fresh processes (cold ssh connections, as an operator gets them), alternated
round after round on the same machine so that noise hits both alike. Prints each side's median
and the ratio parallel/sequential (target: at most 0.5). Asserts nothing.

    .venv/bin/python bench/status.py [--rounds 5] [--before DIR]
    .venv/bin/python bench/status.py --fleet 6,7,8 [--rounds 5]

Each side's wall time and CPU time (user + system of the process and its children) are
printed; ``--before DIR`` (a copy of the repository at an earlier commit) adds that tree's `inv
status` to the same rounds, each tree importing its own hatasks.

With ``--fleet A,B,C`` (lab instances, each up): `status` over the fleet of all of them (one
inventory from `lab.fleet-inventory`, every DB and LB cluster) vs `status` over the first alone
(the same kind of inventory, its two clusters), alternated round after round, end to end and in
process; the ratio fleet/one (target: at most 1.3, the clusters being asked in parallel). Then
the operation lock's acquire + release overhead on the first instance's DB cluster (bench/lock).

The sequential side (`--one sequential`, the reference of issue 14's target) collects the
main facts `status` shows: crm_mon of each cluster, SHOW pool_nodes through the VIP, and a
direct connection to each backend, one host after another. It leaves out what `status` also
reads (the operation lock in the CIB and on each host, the constraints, the newest-data
records, an ssh connection to every host); `all facts host after host` (`--one
all-sequential`: status.collect(parallel=False)) reads all of it, each read after the other.
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


def timed(cmd, cwd=ROOT, env=None):
    """(wall seconds, CPU seconds user + system) of COMMAND, run to its end; exits on failure."""
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - start
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"bench/status: {' '.join(cmd)} failed ({proc.returncode}):\n"
                 f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, (now.ru_utime - used.ru_utime) + (now.ru_stime - used.ru_stime)


def fleet_inventory(instances):
    """The path of a fleet inventory over INSTANCES (as `inv lab.fleet-inventory` writes it)."""
    from lab.base import LAB_DIR
    from lab.configs import fleet_texts

    hosts, ssh = fleet_texts(instances)
    folder = LAB_DIR / ".state" / ("fleet-" + "-".join(map(str, instances)))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ssh_config").write_text(ssh)
    (folder / "hosts.ini").write_text(hosts)
    return folder / "hosts.ini"


def timed_any(cmd, env):
    """Seconds COMMAND took and its exit code (status exits non-zero on a problem: reported)."""
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    return time.monotonic() - start, proc.returncode


def fleet(instances, rounds):
    import os
    import tempfile

    from hatasks import remote, status
    from hatasks.config import make_context

    paths = {"one": fleet_inventory(instances[:1]), "fleet": fleet_inventory(instances)}
    tmp = tempfile.mkdtemp(prefix="bench-status-")
    envs = {k: dict(os.environ, INVOKE_HATASKS_INVENTORY=str(p),
                    INVOKE_HATASKS_STATE_DIR=os.path.join(tmp, k)) for k, p in paths.items()}
    cmd = [str(pathlib.Path(sys.executable).parent / "inv"), "status", "--format", "json"]
    print(f"fleet: lab instances {instances}: {len(instances) * 2} clusters vs instance "
          f"{instances[0]}'s 2 clusters")
    ends = {"one": [], "fleet": []}
    for i in range(rounds):
        for side in (("one", "fleet") if i % 2 == 0 else ("fleet", "one")):
            seconds, code = timed_any(cmd, envs[side])
            ends[side].append(seconds)
            if code:
                print(f"  (round {i + 1}: status over {side} exited {code})")
        print(f"round {i + 1}: status over one instance {ends['one'][-1]:.3f} s, over the fleet "
              f"{ends['fleet'][-1]:.3f} s", flush=True)
    mo, mf = statistics.median(ends["one"]), statistics.median(ends["fleet"])
    print(f"end to end (process start included): median one {mo:.3f} s, fleet {mf:.3f} s, "
          f"ratio fleet/one = {mf / mo:.2f} (target <= 1.3)")

    ctxs = {k: make_context(inventory=str(p), state_dir=os.path.join(tmp, "c-" + k))
            for k, p in paths.items()}
    coll = {"one": [], "fleet": []}
    for i in range(rounds):
        for side in (("one", "fleet") if i % 2 == 0 else ("fleet", "one")):
            remote.close_all()
            start = time.monotonic()
            data = status.collect(ctxs[side])
            coll[side].append(time.monotonic() - start)
            if not data["healthy"]:
                print(f"  (round {i + 1}, {side}: not healthy: {data['problems']})")
    mo, mf = statistics.median(coll["one"]), statistics.median(coll["fleet"])
    print(f"collection only (cold connections, in process): median one {mo:.3f} s, fleet "
          f"{mf:.3f} s, ratio fleet/one = {mf / mo:.2f} (target <= 1.3)")

    from bench import lock as bench_lock

    shared = make_context(inventory=str(paths["one"]), state_dir=os.path.join(tmp, "lock-c"),
                          cluster_state=True)
    local = make_context(inventory=str(paths["one"]), state_dir=os.path.join(tmp, "lock-l"),
                         cluster_state=False)
    cluster = f"db{instances[0]}"
    bench_lock.once(shared, cluster)  # warm the ssh connections
    times = {"local": [], "cluster": []}
    for _ in range(max(rounds, 10)):
        times["local"].append(bench_lock.once(local, cluster))
        times["cluster"].append(bench_lock.once(shared, cluster))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"operation lock on {cluster}: local only {med['local'] * 1000:.1f} ms, kept in the "
          f"cluster {med['cluster'] * 1000:.1f} ms; acquire + release overhead "
          f"{(med['cluster'] - med['local']) * 1000:.1f} ms per mutating task")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fleet", help="lab instances, e.g. 6,7,8: status over all vs the first")
    ap.add_argument("--before", type=pathlib.Path,
                    help="an earlier copy of the repository (git worktree add --detach DIR REV): "
                         "its `inv status` measured in the same rounds")
    ap.add_argument("--compile", action="store_true",
                    help="compile the trees' hatasks and bench to bytecode first (as pip install "
                         "does; with PYTHONDONTWRITEBYTECODE set, every run compiles otherwise)")
    ap.add_argument("--one", choices=["sequential", "all-sequential"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fleet:
        fleet([int(n) for n in args.fleet.split(",") if n.strip()], args.rounds)
        return
    if args.one == "sequential":
        sequential_once()
        return
    if args.one == "all-sequential":
        from hatasks import status
        from hatasks.config import make_context

        status.collect(make_context(), parallel=False)
        return
    import os

    venv_bin = pathlib.Path(sys.executable).parent
    status_cmd = [str(venv_bin / "inv"), "status", "--format", "json"]
    sequential_cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--one", "sequential"]
    # each side imports its own tree's hatasks (PYTHONPATH first, before the venv's editable one)
    every_cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--one", "all-sequential"]
    sides = {"inv status": (status_cmd, ROOT), "host after host": (sequential_cmd, ROOT),
             "all facts host after host": (every_cmd, ROOT)}
    if args.before:
        sides["inv status (before)"] = (status_cmd, args.before.resolve())
    if args.compile:
        for tree in {tree for _, tree in sides.values()}:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "hatasks"),
                            str(tree / "bench"), str(tree / "tasks.py")], check=True)
    print(f"{args.rounds} rounds{', trees compiled first' if args.compile else ''}, "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")
    wall, cpu = {k: [] for k in sides}, {k: [] for k in sides}
    for i in range(args.rounds):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))  # noise hits all alike
        for side in order:
            cmd, tree = sides[side]
            env = dict(os.environ, PYTHONPATH=str(tree))
            w, c = timed(cmd, cwd=tree, env=env)
            wall[side].append(w)
            cpu[side].append(c)
        print(f"round {i + 1}: " + "   ".join(f"{k} {wall[k][-1]:.3f} s ({cpu[k][-1]:.3f} s CPU)"
                                               for k in sides), flush=True)
    med = {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in sides}
    print("medians (wall / CPU user+system): " + ", ".join(
        f"{k} {w:.3f} s / {c:.3f} s" for k, (w, c) in med.items()))
    print("fastest (wall / CPU): " + ", ".join(
        f"{k} {min(wall[k]):.3f} s / {min(cpu[k]):.3f} s" for k in sides))
    seq, every = med["host after host"], med["all facts host after host"]
    for k in sides:
        if k.startswith("inv status"):
            print(f"end to end: {k} / all facts host after host = {med[k][0] / every[0]:.2f} "
                  f"wall, {med[k][1] / every[1]:.2f} CPU")
        if k != "host after host":
            print(f"end to end (process start included): {k} / host after host = "
                  f"{med[k][0] / seq[0]:.2f} wall (target <= 0.5), {med[k][1] / seq[1]:.2f} CPU")
    if args.before:
        a, b = med["inv status"], med["inv status (before)"]
        print(f"inv status after / before: {a[0] / b[0]:.2f} wall, {a[1] / b[1]:.2f} CPU")

    # the collection alone, in this process, every round with cold ssh connections
    from hatasks import remote, status
    from hatasks.config import make_context

    ctx = make_context()
    cpar, cseq, ppar, pseq = [], [], [], []
    for i in range(args.rounds):
        for side in ((0, 1) if i % 2 == 0 else (1, 0)):
            remote.close_all()
            start, used = time.monotonic(), time.process_time()
            if side == 0:
                data = status.collect(ctx)
                cpar.append(time.monotonic() - start)
                ppar.append(time.process_time() - used)
            else:
                sequential_once(ctx)
                cseq.append(time.monotonic() - start)
                pseq.append(time.process_time() - used)
        if not data["healthy"]:
            print(f"  (round {i + 1}: cluster not healthy: {data['problems']})")
    mcp, mcs = statistics.median(cpar), statistics.median(cseq)
    print(f"collection only (cold connections, in process): parallel {mcp:.3f} s, host after host "
          f"{mcs:.3f} s, ratio = {mcp / mcs:.2f} (target <= 0.5); this process's CPU "
          f"{statistics.median(ppar):.3f} s vs {statistics.median(pseq):.3f} s")


if __name__ == "__main__":
    main()
