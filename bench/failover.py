"""Benchmark: `inv db.failover` against Pacemaker's own move, `db.diagnose` against `inv status`.

1. failover. An independent poller (a thread here running `crm_mon -1 --output-as=xml` inside a
   DB node through nsenter, every 100 ms; it does not use hatasks) watches the cluster while
   `inv db.failover --yes` runs end to end (python start, state read, newest-data record,
   standby, verification, node back online, verification, pgpool answering). Pacemaker's time
   for the same move = from the first poll showing the node in standby to the first poll
   showing the group Started on the other node with that node back online... measured twice:
   - "pcmk move": inside the inv run, standby seen -> group started on the other node;
   - "by hand": the same sequence typed directly (crm_standby on, wait for the group on the
     other node, crm_standby off, wait for the node online), timed with the same poller.
   ratio = inv end-to-end / by-hand (target <= 1.3); also inv / pcmk move.
2. diagnose. `inv db.diagnose --format json` vs `inv status --format json` on a healthy cluster
   (if `status` is missing: hb.status + pgpool.status + pg.status), median of N runs each;
   ratio target <= 1.5; then the same in a new state (a node left in standby and a ban left
   by crm_resource: standby-left, constraint-left).

One run, prints the figures; no asserts. The group is moved back to where it started.

    HATASKS_LAB=4 .venv/bin/python bench/failover.py [--runs 3] [--before DIR] [--no-diagnose]
                                                     [--via inv|hatasks]

``--before DIR``: another copy of the repository (``git archive REV | tar -x -C DIR``): its
``inv db.failover`` runs in the same loop, alternating with this checkout's, against the same
by-hand moves, and both ratios are printed side by side (before / after).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.core import Lab  # noqa: E402

INV = str(pathlib.Path(sys.executable).parent / "inv")
GROUP = ("db-vip", "pgpool")


class Poller(threading.Thread):
    """crm_mon on NODE every PERIOD seconds: [(t_read, nodes, group_node)]."""

    def __init__(self, lab, node, period=0.1):
        super().__init__(daemon=True)
        self.lab, self.node, self.period = lab, node, period
        self.samples = []
        self.stop_ev = threading.Event()

    def run(self):
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            try:
                mon = self.lab.crm_mon(self.node)
                where = {tuple(mon["resources"].get(r, [])) for r in GROUP}
                one = next(iter(where)) if len(where) == 1 else ()
                gnode = one[0] if len(one) == 1 else None
                self.samples.append((time.monotonic(), mon["nodes"], gnode))
            except Exception:
                pass
            nxt += self.period
            time.sleep(max(0.0, nxt - time.monotonic()))

    def first(self, pred, after=0.0):
        for t, nodes, g in self.samples:
            if t >= after and pred(nodes, g):
                return t
        return None

    def stop(self):
        self.stop_ev.set()
        self.join()


def group_node(lab):
    mon = lab.crm_mon("db01")
    where = {tuple(mon["resources"].get(r, [])) for r in GROUP}
    return next(iter(where))[0] if len(where) == 1 else None


def env_for(n, state_dir):
    env = dict(os.environ)
    env["HATASKS_LAB"] = str(n)
    if n:
        env["INVOKE_HATASKS_INVENTORY"] = str(ROOT / "lab" / ".state" / str(n) / "hosts.ini")
    env["INVOKE_HATASKS_STATE_DIR"] = state_dir
    return env


#: the command the failover runs with: inv from the tree, or (--via hatasks) the installed
#: command's entry point run from the tree, as its console script does
VIA = {"command": "inv"}


def inv(env, *args, cwd=ROOT):
    t0 = time.monotonic()
    argv = [INV, *args]
    if VIA["command"] == "hatasks" and args and args[0] == "db.failover":
        argv = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(cwd)!r}); "
                "from hatasks.program import main; main()", *args]
        env = dict(env, HATASKS_INVENTORY=env.get("INVOKE_HATASKS_INVENTORY", ""),
                   HATASKS_STATE_DIR=env["INVOKE_HATASKS_STATE_DIR"])
        if not env["HATASKS_INVENTORY"]:
            env["HATASKS_INVENTORY"] = str(ROOT / "hosts.ini")
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    outs = {}
    readers = [threading.Thread(target=lambda k, f: outs.__setitem__(k, f.read()),
                                args=(k, f), daemon=True)
               for k, f in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    # the task's own rusage (wait4 on its pid): the poller's crm_mon children, reaped by this
    # process meanwhile, would count in RUSAGE_CHILDREN
    _, status, ru = os.wait4(proc.pid, 0)
    dt = time.monotonic() - t0
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout, proc.stderr = outs.get("stdout", ""), outs.get("stderr", "")
    # CPU of the task's process (user + system), a figure the other labs' load moves less
    proc.cpu = ru.ru_utime + ru.ru_stime
    return dt, proc


def wait(pred, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def failover_run(lab, env, peer_of, cwd=ROOT):
    src = group_node(lab)
    dst = peer_of[src]
    poll = Poller(lab, dst)
    poll.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    dt, proc = inv(env, "db.failover", "--yes", cwd=cwd)
    time.sleep(0.3)
    poll.stop()
    if proc.returncode != 0:
        raise SystemExit(f"db.failover failed:\n{proc.stdout}\n{proc.stderr}")
    t_sb = poll.first(lambda nodes, g: nodes.get(src) == "standby", t0)
    t_mv = poll.first(lambda nodes, g: g == dst, t0)
    return {"from": src, "to": dst, "inv": dt, "cpu": proc.cpu,
            "pcmk_move": (t_mv - t_sb) if t_sb and t_mv else None,
            "inv_after_move": (t0 + dt - t_mv) if t_mv else None}


def by_hand_run(lab, peer_of):
    """The same move typed by hand (crm_standby through nsenter), timed by the poller."""
    src = group_node(lab)
    dst = peer_of[src]
    poll = Poller(lab, dst)
    poll.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    lab.hrun(dst, f"crm_standby -N {src} -v on")
    wait(lambda: poll.first(lambda nodes, g: g == dst and nodes.get(src) == "standby", t0))
    lab.hrun(dst, f"crm_standby -N {src} -v off")
    wait(lambda: poll.first(lambda nodes, g: g == dst and nodes.get(src) == "online"
                            and nodes.get(dst) == "online", t0))
    t_end = poll.first(lambda nodes, g: g == dst and nodes.get(src) == "online", t0)
    poll.stop()
    return {"from": src, "to": dst, "by_hand": (t_end - t0) if t_end else None}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def line(label, r):
    return (f"inv db.failover ({label}) {r['inv']:.2f}s ({r['from']}->{r['to']}), pcmk move "
            f"inside it {r['pcmk_move'] or float('nan'):.2f}s, returned "
            f"{r['inv_after_move'] or float('nan'):.2f}s after the move, CPU {r['cpu']:.2f}s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", help="an earlier copy of the repository, run side by side")
    ap.add_argument("--no-diagnose", action="store_true", help="only the failover figures")
    ap.add_argument("--via", choices=("inv", "hatasks"), default="inv",
                    help="run db.failover with inv (default) or the installed command's entry")
    args = ap.parse_args()
    VIA["command"] = args.via
    n = int(os.environ.get("HATASKS_LAB", "0"))
    lab = Lab(n, out=lambda *a, **k: None)
    if lab.problems():
        raise SystemExit(f"lab {n} not healthy: {lab.problems()}")
    peer_of = {"db01": "db02", "db02": "db01"}
    state = tempfile.mkdtemp(prefix="hatasks-bench-")
    env = env_for(n, state)
    home = group_node(lab)
    trees = [("after", ROOT)] + ([("before", pathlib.Path(args.before).resolve())]
                                  if args.before else [])

    runs, hands = {label: [] for label, _ in trees}, []
    for i in range(args.runs):
        for label, tree in (trees if i % 2 == 0 else trees[::-1]):
            hands.append(by_hand_run(lab, peer_of))
            runs[label].append(failover_run(lab, env, peer_of, cwd=tree))
            print(f"run {i + 1}: by hand {hands[-1]['by_hand']:.2f}s ({hands[-1]['from']}->"
                  f"{hands[-1]['to']}); {line(label, runs[label][-1])}", flush=True)
    if group_node(lab) != home:
        inv(env, "db.failback", "--to", home, "--yes")

    bh = med([h["by_hand"] for h in hands])
    print()
    print(f"same move by hand, crm_standby on/off timed by the poller (median of {len(hands)}): "
          f"{bh:.2f}s")
    for label, _ in trees:
        fo = med([r["inv"] for r in runs[label]])
        pm = med([r["pcmk_move"] for r in runs[label]])
        am = med([r["inv_after_move"] for r in runs[label]])
        cpu = med([r["cpu"] for r in runs[label]])
        print(f"{label:6}: db.failover end to end {fo:.2f}s (CPU {cpu:.2f}s); Pacemaker's move "
              f"inside it (standby seen -> group started) {pm:.2f}s; returned {am:.2f}s after "
              f"the move; "
              f"RATIO failover/by-hand = {fo / bh:.2f} (target <= 1.3), "
              f"failover/pcmk-move = {fo / pm:.2f}")
    if args.before:
        # the two trees ran back to back in each round: the per-round difference cancels most
        # of the other labs' load, which moves both runs of a round alike
        for key, what in (("inv", "end to end"), ("cpu", "CPU"),
                          ("inv_after_move", "returned after the move")):
            diffs = [a[key] - b[key] for a, b in zip(runs["after"], runs["before"])
                     if a[key] is not None and b[key] is not None]
            print(f"paired, after - before, {what}: median {med(diffs):+.2f}s over {len(diffs)} "
                  f"rounds ({', '.join(f'{d:+.2f}' for d in diffs)})")
    if args.no_diagnose:
        return

    # diagnose vs status
    has_status = inv(env, "--help", "status")[1].returncode == 0
    t_diag, t_stat = [], []
    for _ in range(args.runs + 2):
        dt, p = inv(env, "db.diagnose", "--format", "json")
        assert json.loads(p.stdout)["pattern"] == "healthy", p.stdout
        t_diag.append(dt)
        if has_status:
            t_stat.append(inv(env, "status", "--format", "json")[0])
        else:
            t_stat.append(sum(inv(env, t, "--format", "json")[0]
                              for t in ("hb.status", "pgpool.status", "pg.status")))

    d, s = med(t_diag), med(t_stat)
    print()
    print(f"db.diagnose (median of {len(t_diag)}): {d:.2f}s; "
          f"{'inv status' if has_status else 'hb.status+pgpool.status+pg.status'}: {s:.2f}s")
    print(f"RATIO diagnose/status = {d / s:.2f}  (target <= 1.5)")

    # diagnose on a cluster in a new state (standby left on the node not running the group,
    # a ban left by crm_resource): the model is read once, not once per rule
    g = group_node(lab)
    o = peer_of[g]
    inv(env, "hb.standby", "--node", o, "--yes", "--force")
    lab.hrun(g, f"crm_resource --ban --resource grp-pgpool --node {o}", timeout=30)
    t_diag2, t_stat2, seen = [], [], set()
    try:
        for _ in range(args.runs + 2):
            dt, p = inv(env, "db.diagnose", "--format", "json")
            seen.add(json.loads(p.stdout)["pattern"])
            t_diag2.append(dt)
            t_stat2.append(inv(env, "status", "--format", "json")[0])
    finally:
        lab.hrun(g, "crm_resource --clear --resource grp-pgpool", timeout=30)
        inv(env, "hb.online", "--node", o, "--yes")
    d2, s2 = med(t_diag2), med(t_stat2)
    print(f"new state ({', '.join(sorted(seen))}): db.diagnose {d2:.2f}s; inv status {s2:.2f}s")
    print(f"RATIO diagnose/status in a new state = {d2 / s2:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
