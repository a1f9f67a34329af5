"""The operation lock and the newest-data record kept in the cluster, on the real lab: two state
dirs stand for two admin hosts (two operators) driving the same clusters.

- while the first operator's operation runs, the second's mutating task is refused naming the
  first; after a SIGKILL of the first (on this same admin host), the second takes over at once;
- after pgpool stops, both admin hosts show the same newest-data record, also the one whose
  state dir was lost.
"""

import json
import shutil
import signal
import subprocess
import sys

import pytest

from .conftest import ROOT, Inv

pytestmark = pytest.mark.lab

LEASE = 6

#: the first operator: a journaled operation on the cluster that never ends by itself
HOLD = """
import time
from hatasks import journal
from hatasks.config import make_context
ctx = make_context()
with journal.operation(ctx, "db", "db.hold-for-test", {}, yes=True):
    print("ready", flush=True)
    time.sleep(600)
"""


def operator(tmp_path, name, lease=LEASE):
    inv = Inv(tmp_path / name)
    inv.env["INVOKE_HATASKS_LOCK_LEASE"] = str(lease)
    inv.env["INVOKE_HATASKS_CLUSTER_STATE"] = "1"  # the state kept in the cluster (opt-in)
    return inv


def lock_rows(inv):
    return json.loads(inv("lock.show", "--cluster", "db", "--format", "json").stdout)["db"]


def cleanup(inv):
    """A harmless mutating task (clears pgpool's fail counts on db01)."""
    return inv("hb.cleanup", "--resource", "pgpool", "--node", "db01", "--yes", check=False)


def test_second_operator_is_refused_then_takes_over_a_killed_holders_lock_at_once(lab, tmp_path):
    # a lease far longer than the test: what ends the killed holder's lock is its death
    a, b = operator(tmp_path, "admin-a", 300), operator(tmp_path, "admin-b", 300)
    first = subprocess.Popen([sys.executable, "-c", HOLD], cwd=ROOT, env=a.env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = first.stdout.readline()
        assert line.strip() == "ready", first.stderr.read()
        rows = lock_rows(b)
        held = [r for r in rows if r["state"] == "held"]
        assert {r["store"] for r in held} == {"CIB", "file on db01", "file on db02"}, rows
        assert {r["pid"] for r in held} == {str(first.pid)}

        refused = cleanup(b)
        assert refused.returncode == 5, refused.stderr
        assert f"pid {first.pid}" in refused.stderr and "db.hold-for-test" in refused.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    # the killed holder ran on this admin host (the same boot and pid namespace): its stores
    # are shown dead and taken over at once, without waiting for the lease (chaos bug I)
    rows = lock_rows(b)
    assert {r["state"] for r in rows} == {"dead"}, rows
    done = cleanup(b)
    assert done.returncode == 0, done.stderr
    assert "taking over the lock of cluster db from" in done.stderr
    assert f"pid {first.pid}" in done.stderr and "its process is gone" in done.stderr
    history = json.loads(b("history", "--format", "json", "--limit", "0").stdout)
    notes = [r for r in history if r.get("message") == "took over the lock of a killed holder"]
    assert notes and notes[0]["data"]["pid"] == str(first.pid)
    # given back: nobody holds it any more
    assert {r["state"] for r in lock_rows(b)} == {"free"}


def pgpool_node(inv):
    state = json.loads(inv("hb.status", "--cluster", "db", "--format", "json").stdout)
    for r in state["resources"]:
        if r["id"] == "pgpool" and r["role"] == "Started":
            return r["node"]
    raise AssertionError("pgpool is not started anywhere")


def recorded(inv):
    # pgpool is down: the task exits non-zero and still prints its view
    data = json.loads(inv("pgpool.status", "--format", "json", check=False).stdout)
    assert data["reachable"] is False, data
    rec = data["recorded"]
    return rec and {k: rec.get(k) for k in ("newest", "ts", "host", "pid", "evidence")}


def test_both_admin_hosts_see_one_newest_record_and_it_survives_a_lost_state_dir(lab, tmp_path):
    a, b = operator(tmp_path, "admin-a"), operator(tmp_path, "admin-b")
    node = pgpool_node(a)
    a("pgpool.stop", "--host", node, "--yes")
    try:
        seen_a, seen_b = recorded(a), recorded(b)
        assert seen_a and seen_a["newest"] in ("db01", "db02")
        assert seen_b == seen_a            # b's own journal is empty: it read the cluster
        shutil.rmtree(a.state_dir)         # the first admin host loses its state dir
        assert recorded(a) == seen_a
    finally:
        a("pgpool.start", "--host", node, "--yes")
