"""Benchmark: sync.resync against the runbook's raw commands, and client-visible downtime.

On one lab instance, with a pgbench database created through pgpool (both backends hold it):

1. --method dump total vs the raw commands by hand on the same data: pg_dumpall to a file on the
   source, scp to the target, initdb + start of a scratch cluster, psql -f (target <= 1.0);
2. --method basebackup total vs a raw pg_basebackup of the source (target <= 1.2);
3. client-visible downtime through pgpool for each method: a probe connects to VIP:9999 and runs
   SELECT 1 every 100 ms; downtime = the sum of the gaps between successful probes longer than
   0.5 s during the run; ratio online / dump (target <= 0.05);
4. the proof before each rebuild (the target holds no write the source lacks), on a clean
   target, as a share of that resync's time (target <= 5 %).

Raw and hatasks runs alternate in one process, side by side (same data, same machine load).
Before each hatasks run the target is detached (pgpool.switch) and a few rows are written through
pgpool, so there is something to resync. Prints the figures; no asserts.

    HATASKS_LAB=3 .venv/bin/python bench/resync.py [--scale 70] [--keep] [--before DIR]

``--before DIR``: an earlier copy of the repository (``git worktree add --detach DIR REV``); each
method then runs with both trees, one after the other (the order alternates per method), each
with its own journal, and the ratios after / before are printed side by side. DIR/lab/.state/N
must be (or link to) this instance's state.
"""

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

ROOT = pathlib.Path(__file__).resolve().parents[1]
INV = str(pathlib.Path(sys.executable).parent / "inv")
N = int(os.environ.get("HATASKS_LAB", "0"))
STATE = ROOT / "lab" / ".state" / str(N)
NET = f"10.231.{N}"
VIP = f"{NET}.100"
BIN = "/usr/lib/postgresql/15/bin"
HOME = "/var/lib/postgresql"
DB = "bench"


def env(state_dir):
    e = dict(os.environ, HATASKS_LAB=str(N), INVOKE_HATASKS_STATE_DIR=str(state_dir))
    if N:
        e["INVOKE_HATASKS_INVENTORY"] = str(STATE / "hosts.ini")
    return e


def password():
    return (STATE / "pgpass").read_text().splitlines()[0].rsplit(":", 1)[1]


def ssh(host, command, check=True):
    res = subprocess.run(["ssh", "-F", str(STATE / "ssh_config"), host, command], text=True,
                         capture_output=True)
    if check and res.returncode != 0:
        raise SystemExit(f"{host}: {command[:200]}: exit {res.returncode}: {res.stderr[-500:]}")
    return res.stdout


def as_pg(host, command, check=True):
    return ssh(host, f"runuser -u postgres -- bash -c {shlex.quote('cd ~; ' + command)}", check)


def timed(fn, *a):
    t0 = time.monotonic()
    fn(*a)
    return time.monotonic() - t0


def inv(state_dir, *args, cwd=ROOT):
    t0 = time.monotonic()
    res = subprocess.run([INV, *args], cwd=cwd, env=env(state_dir), text=True, capture_output=True)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}")
    return took, res.stdout


def vip_sql(sql, db=DB):
    conn = psycopg2.connect(host=VIP, port=9999, dbname=db, user="postgres", password=password(),
                            connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


class Probe:
    """SELECT 1 through pgpool every 100 ms (new connection each time)."""

    def __init__(self):
        self.ok = []
        self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                conn = psycopg2.connect(host=VIP, port=9999, dbname="postgres", user="postgres",
                                        password=password(), connect_timeout=2)
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                finally:
                    conn.close()
                self.ok.append(time.monotonic())
            except psycopg2.Error:
                self.failed += 1
            time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))

    def __enter__(self):
        self.thread.start()
        time.sleep(0.5)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.t1 = time.monotonic()
        time.sleep(1.0)
        self.stop.set()
        self.thread.join(10)

    def downtime(self):
        times = [t for t in self.ok]
        gaps = [(a, b) for a, b in zip(times, times[1:]) if b > self.t0 and a < self.t1 and b - a > 0.5]
        return sum(b - a for a, b in gaps), max((b - a for a, b in gaps), default=0.0)


def setup(scale, state_dir):
    have = None
    try:
        have = vip_sql("SELECT count(*) FROM pgbench_branches")[0][0]
    except psycopg2.Error:
        pass
    if have == scale:
        print(f"bench database present (scale {scale})", flush=True)
        return
    print(f"creating database {DB} with pgbench -i -s {scale} through pgpool (both backends)...", flush=True)
    try:
        vip_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    except psycopg2.Error:
        pass
    vip_sql(f"CREATE DATABASE {DB}", db="postgres")
    t = timed(as_pg, "db01", f"{BIN}/pgbench -i -I dtGvp -s {int(scale)} -q -h {VIP} -p 9999 {DB} >/dev/null 2>&1")
    size = vip_sql("SELECT pg_size_pretty(pg_database_size(current_database()))")[0][0]
    print(f"  done in {t:.0f}s; database size {size}", flush=True)


def degenerate(state_dir, target):
    inv(state_dir, "pgpool.switch", "--node", target, "--yes")
    vip_sql("CREATE TABLE IF NOT EXISTS bench_marks (id serial PRIMARY KEY, note text)")
    vip_sql("INSERT INTO bench_marks (note) SELECT 'while degenerated' FROM generate_series(1, 10)")


def raw_dump(src, dst, dst_addr):
    """The runbook's commands by hand: dump to a file, copy, initdb + start, restore."""
    f = f"{HOME}/bench-raw.sql"
    data = f"{HOME}/bench-raw-data"
    as_pg(dst, f"rm -rf {data} {f}; true")
    t = {}
    t["dump"] = timed(as_pg, src, f"{BIN}/pg_dumpall -p 5432 -c -v -f {f} 2>{HOME}/bench-raw.log")
    t["copy"] = timed(as_pg, src, f"scp -q -o BatchMode=yes {f} postgres@{dst_addr}:{f}")
    t["initdb+start"] = timed(as_pg, dst, f"{BIN}/initdb -D {data} -U postgres >/dev/null && "
                                          f"{BIN}/pg_ctl -D {data} -o '-p 5499' -l {HOME}/bench-raw-pg.log -w start >/dev/null")
    t["restore"] = timed(as_pg, dst, f"{BIN}/psql -X -q -p 5499 -d postgres -f {f} >{HOME}/bench-raw-restore.log 2>&1; true")
    as_pg(dst, f"{BIN}/pg_ctl -D {data} -m fast -w stop >/dev/null; rm -rf {data} {f}")
    as_pg(src, f"rm -f {f} {HOME}/bench-raw.log")
    return t


def raw_basebackup(src_addr, dst):
    data = f"{HOME}/bench-raw-bb"
    as_pg(dst, f"rm -rf {data}")
    t = timed(as_pg, dst, f"{BIN}/pg_basebackup -h {src_addr} -p 5432 -U postgres -D {data} -X stream -c fast")
    as_pg(dst, f"rm -rf {data}")
    return t


def step_seconds(state_dir):
    """{step: seconds} of the latest sync.resync in the bench's journal (its checkpoints)."""
    recs = [json.loads(ln) for ln in (state_dir / "journal.jsonl").read_text().splitlines() if ln.strip()]
    ops = [r.get("op") for r in recs if r.get("action") == "sync.resync" and r.get("event") == "checkpoint"]
    last = ops[-1] if ops else None
    return {r["step"]: (r.get("data") or {}).get("seconds") for r in recs
            if r.get("op") == last and r.get("event") == "checkpoint" and r.get("step") != "plan"}


def ours(state_dir, method, cwd=ROOT):
    with Probe() as probe:
        took, out = inv(state_dir, "sync.resync", "--method", method, "--yes", cwd=cwd)
    total, longest = probe.downtime()
    kept = [ln.split("old data dir kept: ", 1)[1].strip() for ln in out.splitlines() if "old data dir kept: " in ln]
    # "proof: db02 holds no write db01 lacks (HOW, 0.123s)": the proof before the rebuild
    proof = [ln for ln in out.splitlines() if ln.startswith("proof: ")]
    proof_s = float(proof[0].rsplit(", ", 1)[1].rstrip("s)")) if proof else None
    steps = step_seconds(state_dir)
    return {"seconds": took, "downtime": total, "longest_gap": longest, "probes_failed": probe.failed,
            "kept": kept[0] if kept else None, "proof_seconds": proof_s,
            "proof": proof[0] if proof else None, "steps": steps,
            # beyond the copy itself: every step but the dump/import/basebackup/recovery, plus
            # what runs before the first step (start-up, plan, proof, preflight)
            "fixed": took - sum(v or 0 for k, v in steps.items()
                                if k in ("dump_source", "import", "basebackup", "recover_online"))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=70)
    ap.add_argument("--keep", action="store_true", help="keep the bench database and the kept data dirs")
    ap.add_argument("--before", help="an earlier copy of the repository, run side by side")
    args = ap.parse_args()
    state_dir = pathlib.Path(tempfile.mkdtemp(prefix="hatasks-bench-resync-"))
    if args.before:
        return side_by_side(args, state_dir, pathlib.Path(args.before).resolve())
    inv(state_dir, "lab.up")
    setup(args.scale, state_dir)
    src, dst = "db01", "db02"
    dst_addr, src_addr = f"{NET}.12", f"{NET}.11"
    results = {}

    print("raw dump/copy/restore...", flush=True)
    results["raw_dump"] = raw_dump(src, dst, dst_addr)
    print(f"  {results['raw_dump']}", flush=True)
    print("sync.resync --method dump...", flush=True)
    degenerate(state_dir, dst)
    results["dump"] = ours(state_dir, "dump")
    print(f"  {results['dump']}", flush=True)

    print("raw pg_basebackup...", flush=True)
    results["raw_basebackup"] = raw_basebackup(src_addr, dst)
    print(f"  {results['raw_basebackup']:.1f}s", flush=True)
    print("sync.resync --method basebackup...", flush=True)
    degenerate(state_dir, dst)
    results["basebackup"] = ours(state_dir, "basebackup")
    print(f"  {results['basebackup']}", flush=True)

    print("sync.resync --method online...", flush=True)
    degenerate(state_dir, dst)
    results["online"] = ours(state_dir, "online")
    print(f"  {results['online']}", flush=True)

    # the proof's dearest path (no usable record of the target: both sides' checksums of every
    # table) reads what sync.verify reads: timed here on the same data, both backends up
    results["both_sides_checksums"], _ = inv(state_dir, "sync.verify")

    raw_core = sum(v for k, v in results["raw_dump"].items() if k != "initdb+start")
    raw_all = sum(results["raw_dump"].values())
    size = vip_sql("SELECT pg_size_pretty(pg_database_size(current_database()))")[0][0]
    d, b, o = results["dump"], results["basebackup"], results["online"]
    print(f"\n=== sync.resync benchmark, lab {N}, pgbench scale {args.scale} ({size} per backend) ===")
    print(f"(1) dump method {d['seconds']:.1f}s vs raw dump+copy+restore {raw_core:.1f}s "
          f"(+initdb/start {raw_all:.1f}s): ratio {d['seconds'] / raw_core:.2f} "
          f"({d['seconds'] / raw_all:.2f} with initdb/start)  target <= 1.0")
    print("    raw steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in results["raw_dump"].items()))
    print(f"(2) basebackup method {b['seconds']:.1f}s vs raw pg_basebackup {results['raw_basebackup']:.1f}s: "
          f"ratio {b['seconds'] / results['raw_basebackup']:.2f}  target <= 1.2")
    print("(3) client-visible downtime through pgpool (probe every 100 ms):")
    for m in ("dump", "basebackup", "online"):
        r = results[m]
        print(f"    {m:10} {r['downtime']:6.2f}s (longest gap {r['longest_gap']:.2f}s, "
              f"{r['probes_failed']} failed probes, resync {r['seconds']:.1f}s)")
    ratio = o["downtime"] / d["downtime"] if d["downtime"] else float("nan")
    print(f"    ratio online/dump {ratio:.3f}  target <= 0.05")
    print("(5) where each resync's time goes (journaled step seconds); fixed = the resync's time "
          "beyond its copy steps (target <= 3 s):")
    for m in ("dump", "basebackup", "online"):
        r = results[m]
        print(f"    {m:10} fixed {r['fixed']:.1f}s; " + ", ".join(f"{k} {v}" for k, v in r["steps"].items()))
    print("(4) the proof that the (clean) target holds no write the source lacks, run before "
          "every rebuild:")
    for m in ("dump", "basebackup", "online"):
        r = results[m]
        if r.get("proof_seconds") is None:
            print(f"    {m:10} no proof line in the output")
            continue
        print(f"    {m:10} {r['proof_seconds']:.2f}s = {100 * r['proof_seconds'] / r['seconds']:.1f} % "
              f"of the resync's {r['seconds']:.1f}s  target <= 5 %")
        print(f"               {r['proof']}")
    both = results["both_sides_checksums"]
    print(f"    both sides' checksums (the proof without a usable record of the target; timed as "
          f"inv sync.verify, start-up included): {both:.2f}s = "
          + ", ".join(f"{100 * both / results[m]['seconds']:.1f} % of the {m} resync" for m in
                      ("dump", "basebackup", "online")))
    print(json.dumps(results, indent=1, default=str))

    if not args.keep:
        for m in ("dump", "basebackup", "online"):
            kept = results[m].get("kept")
            if kept:
                inv(state_dir, "sync.cleanup", "--delete", "--host", dst, "--remove-datadir",
                    kept.rsplit("/", 1)[1], "--yes")
        # WITH (FORCE): pgpool keeps pooled connections to the database open
        vip_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")


def side_by_side(args, state_dir, before):
    """Each method with the before tree and this one, alternating which goes first; the raw
    commands once per method between them. Prints the ratios after / before."""
    if not (before / "lab" / ".state" / str(N) / "hosts.ini").exists():
        raise SystemExit(f"{before}/lab/.state/{N} does not hold this instance's state (link it)")
    inv(state_dir, "lab.up")
    setup(args.scale, state_dir)
    src, dst, dst_addr, src_addr = "db01", "db02", f"{NET}.12", f"{NET}.11"
    trees = [("after", ROOT, state_dir),
             ("before", before, pathlib.Path(tempfile.mkdtemp(prefix="hatasks-bench-resync-before-")))]
    res, raw, kept = {}, {}, []
    for i, method in enumerate(("dump", "basebackup", "online")):
        if method == "dump":
            raw[method] = sum(v for k, v in raw_dump(src, dst, dst_addr).items() if k != "initdb+start")
        elif method == "basebackup":
            raw[method] = raw_basebackup(src_addr, dst)
        for label, tree, sd in (trees if i % 2 == 0 else trees[::-1]):
            degenerate(sd, dst)
            r = ours(sd, method, cwd=tree)
            res[(label, method)] = r
            kept.append((sd, tree, r.get("kept")))
            print(f"{method:10} {label:6} {r['seconds']:.1f}s fixed {r['fixed']:.1f}s downtime "
                  f"{r['downtime']:.2f}s; " + ", ".join(f"{k} {v}" for k, v in r["steps"].items()),
                  flush=True)
    size = vip_sql("SELECT pg_size_pretty(pg_database_size(current_database()))")[0][0]
    print(f"\n=== sync.resync side by side, lab {N}, pgbench scale {args.scale} ({size} per backend) ===")
    print(f"{'method':10} {'before':>8} {'after':>8} {'after/before':>12} {'fixed before':>12} "
          f"{'fixed after':>11} {'raw':>6} {'before/raw':>10} {'after/raw':>9}")
    for method in ("dump", "basebackup", "online"):
        b, a = res[("before", method)], res[("after", method)]
        rw = raw.get(method)
        print(f"{method:10} {b['seconds']:8.1f} {a['seconds']:8.1f} {a['seconds'] / b['seconds']:12.2f} "
              f"{b['fixed']:12.1f} {a['fixed']:11.1f} "
              + (f"{rw:6.1f} {b['seconds'] / rw:10.2f} {a['seconds'] / rw:9.2f}" if rw else ""))
    print("(dump raw = pg_dumpall + scp + psql restore, without initdb/start; basebackup raw = "
          "pg_basebackup; fixed = time beyond the copy steps)")
    print(json.dumps({f"{k[0]}:{k[1]}": v for k, v in res.items()}, indent=1, default=str))
    if not args.keep:
        for sd, tree, k in kept:
            if k:
                inv(sd, "sync.cleanup", "--delete", "--host", dst, "--remove-datadir",
                    k.rsplit("/", 1)[1], "--yes")
        vip_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")


if __name__ == "__main__":
    main()
