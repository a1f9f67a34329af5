"""States hatasks or an operator leaves behind, produced the way they happen, on the real lab.

For each: marker rows written through pgpool before; the state produced by the tool's own
command (pgpool.stop, hb.standby, hb.maintenance, a sync.resync killed with SIGKILL) or the
operator's (crm_resource --ban); `db.diagnose --format json` names it; `db.recover --yes` ends
with `inv status` exit 0 and every acknowledged marker row on both backends, or, for a human
decision, exits 3 at once with the words, and recovers after the human step. Independent
checks: the lab's own health check and psql to each backend directly.
"""

import os
import signal
import subprocess
import time

import pytest

from .conftest import INV, ROOT
from .test_scenarios_lab import LAB, Markers, diagnose, group_node, healthy, other

pytestmark = pytest.mark.lab


def recovered(inv, markers):
    """db.recover --yes exits 0, inv status exits 0, the lab is healthy, the markers are on both
    backends (and a new one written through pgpool reaches both)."""
    proc = inv("db.recover", "--yes", check=False, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    st = inv("status", check=False, timeout=60)
    assert st.returncode == 0, st.stdout[-2000:] + st.stderr[-1000:]
    healthy()
    markers.write(2)
    markers.check_both()
    return proc


def test_pgpool_stopped_by_pgpool_stop_is_named_and_started_again(lab, inv):
    healthy()
    markers = Markers()
    markers.write(3)
    g = group_node("db")
    inv("pgpool.stop", "--host", g, "--yes")
    d = diagnose(inv, "db", "pgpool-stopped")
    assert d["pattern"] == "pgpool-stopped" and d["host"] == g, d
    assert d["plan"][0] == f"inv pgpool.start --host {g}"
    assert ["pgpool", g] not in d["problems"]
    recovered(inv, markers)


def test_standby_left_is_brought_online(lab, inv):
    healthy()
    markers = Markers()
    markers.write(3)
    o = other("db", group_node("db"))
    inv("hb.standby", "--node", o, "--yes", "--force")
    d = diagnose(inv, "db", "standby-left")
    assert d["host"] == o and d["plan"][0] == f"inv hb.online --node {o}", d
    assert not any(p[0] == "heartbeat" for p in d["problems"])
    recovered(inv, markers)


def test_constraint_left_by_a_ban_is_cleared(lab, inv):
    healthy()
    markers = Markers()
    markers.write(3)
    g = group_node("db")
    o = other("db", g)
    # the operator's command: keep the group off the other node (nothing moves)
    LAB.hrun(g, f"crm_resource --ban --resource grp-pgpool --node {o}", timeout=30)
    d = diagnose(inv, "db", "constraint-left")
    assert d["host"] == o and d["plan"][0] == "inv hb.clear --resource grp-pgpool", d
    assert any(f"cli-ban-grp-pgpool-on-{o}" in e for e in d["evidence"])
    recovered(inv, markers)
    out = LAB.hrun(g, "cibadmin --query --scope constraints", timeout=30).stdout
    assert "cli-ban-" not in out


def test_cluster_maintenance_is_a_human_decision(lab, inv):
    healthy()
    markers = Markers()
    markers.write(3)
    inv("hb.maintenance", "--on", "--yes")
    try:
        d = diagnose(inv, "db", "maintenance")
        assert d["pattern"] == "maintenance" and d["plan"][0].startswith("manual:"), d
        t0 = time.monotonic()
        proc = inv("db.recover", "--yes", check=False, timeout=120)
        assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr
        assert time.monotonic() - t0 < 30
        assert "needs a human" in proc.stderr and "inv hb.maintenance --off" in proc.stderr
    finally:
        inv("hb.maintenance", "--off", "--yes")   # the human step
    recovered(inv, markers)


def test_resync_killed_is_named_and_resumed(lab, inv):
    healthy()
    markers = Markers()
    markers.write(3)
    g = group_node("db")
    o = other("db", g)
    proc = subprocess.Popen(
        [INV, "sync.resync", "--source", g, "--target", o, "--method", "dump", "--force", "--yes"],
        cwd=ROOT, env=inv.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # kill it once the target's data directory was moved away
            seen.append(line)
            if "keep_datadir" in line and line.lstrip().startswith("["):
                time.sleep(1)
                break
            assert time.monotonic() < deadline, "".join(seen)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    d = diagnose(inv, "db", "resync-interrupted")
    assert d["pattern"] == "resync-interrupted" and d["host"] == o, d
    assert d["plan"][:2] == ["inv sync.resume", "or: inv sync.rollback"]
    assert not any(s.startswith(f"inv pg.start --host {o}") for s in d["plan"])
    recovered(inv, markers)
