"""Benchmark: how soon after Pacemaker completes a standby move does `inv hb.standby` return?

For each run: an independent poller (a second process: python3 on a cluster node, started over
ssh) runs `crm_mon -1 --output-as=xml` every 100 ms and prints what it saw with timestamps
(the lab hosts share this machine's clock). Meanwhile `inv hb.standby --node N --yes` runs here.
The move is complete at the first poll that shows N in standby, nothing active on N and every
resource of the group Started on another node. Prints, per run and overall: our return time,
the move completion time (both from the start of `inv`), the lag (return - completion, as a
range given the poll resolution) and the ratio. Target: lag <= 0.5 s. No asserts on time.

After each run `inv hb.online --node N --yes` brings the node back (the DB group does not fail
back, so the next run moves it the other way).

    HATASKS_LAB=1 INVOKE_HATASKS_INVENTORY=$PWD/lab/.state/1/hosts.ini \\
        .venv/bin/python bench/standby.py [--cluster db] [--runs 3]
"""

import argparse
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import invoke  # noqa: E402

from hatasks import inventory as inventory_mod  # noqa: E402
from hatasks import remote  # noqa: E402

INV = str(pathlib.Path(sys.executable).parent / "inv")

#: runs on the node; one JSON line per finished crm_mon: t1 (launched), t2 (output read), state
POLLER = r"""
import json, subprocess, sys, time, xml.etree.ElementTree as ET
period, duration = float(sys.argv[1]), float(sys.argv[2])
def state(text):
    root = ET.fromstring(text[text.find("<"):])
    nodes = {}
    for n in root.find("nodes"):
        nodes[n.get("name")] = ("offline" if n.get("online") != "true" else
                                "standby" if n.get("standby") == "true" else "online")
    res = {}
    for r in root.find("resources").iter("resource"):
        where = [x.get("name") for x in r.findall("node")]
        res[r.get("id")] = [r.get("role"), where]
    return {"nodes": nodes, "res": res}
running, nxt, end = [], time.time(), time.time() + duration
while time.time() < end or running:
    now = time.time()
    if now >= nxt and now < end:
        p = subprocess.Popen(["crm_mon", "-1", "--output-as=xml"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        running.append((now, p))
        nxt += period
    for item in list(running):
        t1, p = item
        if p.poll() is not None:
            out = p.stdout.read().decode("utf-8", "replace")
            t2 = time.time()
            running.remove(item)
            try:
                rec = {"t1": t1, "t2": t2, "state": state(out)}
            except Exception as exc:
                rec = {"t1": t1, "t2": t2, "error": str(exc)[:200]}
            sys.stdout.write(json.dumps(rec) + "\n")
            sys.stdout.flush()
    time.sleep(0.005)
"""


def inventory_path():
    value = os.environ.get("INVOKE_HATASKS_INVENTORY")
    if value:
        return value
    instance = int(os.environ.get("HATASKS_LAB", "0"))
    if instance:
        return str(ROOT / "lab" / ".state" / str(instance) / "hosts.ini")
    return str(ROOT / "hosts.ini")


class Poller:
    """The independent crm_mon poller on HOST: a python3 process there, fed over ssh."""

    def __init__(self, ctx, host, period=0.1, duration=120):
        self.samples = []
        self.lock = threading.Lock()
        conn = remote.connection(ctx, host)
        self.channel = conn.client.get_transport().open_session()
        self.channel.exec_command(f"python3 -c {shlex.quote(POLLER)} {period} {duration}")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b""
        while True:
            data = self.channel.recv(65536)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                rec = json.loads(line)
                if "state" in rec:
                    with self.lock:
                        self.samples.append(rec)

    def wait_first(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if self.samples:
                    return self.samples[-1]["state"]
            time.sleep(0.05)
        raise SystemExit("the poller produced no crm_mon sample")

    def stop(self):
        self.channel.close()
        self.thread.join(timeout=5)
        with self.lock:
            return list(self.samples)


def group_members(state, group_ids):
    return {rid: v for rid, v in state["res"].items() if rid in group_ids}


def moved(state, node, group_ids):
    if state["nodes"].get(node) != "standby":
        return False
    for role, where in state["res"].values():
        if node in where and role != "Stopped":
            return False
    members = group_members(state, group_ids)
    return bool(members) and all(role == "Started" and len(where) == 1 and where[0] != node
                                 for role, where in members.values())


def run_inv(env, *args):
    t0 = time.time()
    proc = subprocess.run([INV, *args], cwd=ROOT, env=env, text=True, capture_output=True)
    t1 = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} exited {proc.returncode}:\n"
                         f"{proc.stdout}\n{proc.stderr}")
    return t0, t1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cluster", default="db")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--period", type=float, default=0.1, help="poll period in seconds")
    opts = ap.parse_args()

    path = inventory_path()
    inv = inventory_mod.load(path)
    cluster = inv.cluster(opts.cluster)
    group = cluster.vars["group"]
    ctx = invoke.Context(config=invoke.Config(overrides={"hatasks": {"inventory": path,
                                                                     "connect_timeout": 10}}))
    env = dict(os.environ, INVOKE_HATASKS_INVENTORY=path)
    env.setdefault("INVOKE_HATASKS_STATE_DIR", str(ROOT / ".hatasks-bench"))

    print(f"inventory {path}; cluster {cluster.name}; group {group}; poll every "
          f"{opts.period * 1000:.0f} ms on a node (independent process)")
    results = []
    for i in range(1, opts.runs + 1):
        poll_host = cluster.host_names[0]
        poller = Poller(ctx, poll_host, period=opts.period, duration=180)
        state = poller.wait_first()
        # the group's members: the resources whose group element is the inventory's group
        ids = [rid for rid in state["res"]]
        ids = [rid for rid in ids if rid in _members(ctx, poll_host, group)]
        running = {tuple(state["res"][r][1]) for r in ids}
        if len(running) != 1 or len(next(iter(running))) != 1:
            poller.stop()
            raise SystemExit(f"group {group} is not started on one node: {state['res']}")
        node = next(iter(running))[0]
        time.sleep(0.3)
        t_start, t_return = run_inv(env, "hb.standby", "--node", node, "--yes")
        time.sleep(1.0)
        samples = poller.stop()
        after = [s for s in samples if s["t1"] >= t_start]
        first = next((k for k, s in enumerate(after) if moved(s["state"], node, ids)), None)
        if first is None:
            raise SystemExit(f"run {i}: the poller never saw the move complete")
        done = after[first]
        prev = after[first - 1] if first > 0 else None
        # the move completed after the previous poll's snapshot began, by this poll's end
        move_hi = done["t2"] - t_start
        move_lo = (prev["t1"] if prev else t_start) - t_start
        ret = t_return - t_start
        lag_lo, lag_hi = ret - move_hi, ret - move_lo
        gaps = [b["t1"] - a["t1"] for a, b in zip(after, after[1:])]
        period = statistics.mean(gaps) if gaps else 0
        results.append({"node": node, "return": ret, "move_lo": move_lo, "move_hi": move_hi,
                        "lag_lo": lag_lo, "lag_hi": lag_hi, "period": period})
        print(f"run {i}: standby {node}: inv returned at {ret:.2f} s; Pacemaker move complete "
              f"between {move_lo:.2f} and {move_hi:.2f} s; lag {lag_lo:+.2f}..{lag_hi:+.2f} s "
              f"(mid {(lag_lo + lag_hi) / 2:+.2f}); ratio return/move {ret / move_hi:.2f}; "
              f"poll period {period * 1000:.0f} ms")
        run_inv(env, "hb.online", "--node", node, "--yes")
        time.sleep(1.0)

    if results:
        mid = [(r["lag_lo"] + r["lag_hi"]) / 2 for r in results]
        print(f"summary over {len(results)} runs: inv return mean "
              f"{statistics.mean(r['return'] for r in results):.2f} s; move complete mean "
              f"{statistics.mean(r['move_hi'] for r in results):.2f} s (upper bound); lag mid mean "
              f"{statistics.mean(mid):+.2f} s, worst upper bound "
              f"{max(r['lag_hi'] for r in results):+.2f} s "
              f"(target <= +0.50 s)")


_member_cache = {}


def _members(ctx, host, group):
    """Ids of GROUP's members from the CIB (read once)."""
    if group not in _member_cache:
        import xml.etree.ElementTree as ET

        res = remote.run(ctx, host, "cibadmin --query --scope resources", probe=True)
        root = ET.fromstring(res.stdout)
        ids = set()
        for g in root.iter("group"):
            if g.get("id") == group:
                ids.update(p.get("id") for p in g.iter("primitive"))
        _member_cache[group] = ids
    return _member_cache[group]


if __name__ == "__main__":
    main()
