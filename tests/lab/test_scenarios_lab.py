"""The conformance suite of the runbook's scenarios on the real lab (5.1, 5.2, tables 5-2..5-4).

For each of the six DB failure patterns and the four LB ones: marker rows are written through
pgpool (the DB VIP) before the fault and, where pgpool still answers, while it lasts; the fault
is injected with `lab.fault` (the degenerated pattern with `pgpool.switch`, as an operator
would cause it); `diagnose --format json` must name the pattern; what needs a human is healed
with `lab.heal` (recover run before that must exit non-zero and say what is needed); then
`recover --yes`. The check afterwards is independent of hatasks: the lab's own health check
(both nodes online in both clusters, groups started, no failed action, pgpool both backends up,
the LB page served) and psql to each backend directly: every acknowledged marker row is on
both backends. Also: db failover/failback round trip, maintenance for a reboot then recover,
--dry of every scenario changes nothing, refusals when preconditions do not hold, the cron
jobs meeting a held lock.

No test assumes where a group runs: it reads it (crm_mon through the lab, not hatasks).
"""

import json
import re
import subprocess
import sys
import time
import uuid

import pytest

from lab.core import APP_DB, Lab

from .conftest import INSTANCE, ROOT

pytestmark = pytest.mark.lab

LAB = Lab(INSTANCE, out=lambda *a, **k: None)
MARKER_DDL = ("CREATE TABLE IF NOT EXISTS hatasks_marker (tag text NOT NULL, n integer NOT NULL, "
              "PRIMARY KEY (tag, n));")


# --------------------------------------------------------------------------- independent probes


def group_node(cluster):
    hosts = ("db01", "db02") if cluster == "db" else ("lb01", "lb02")
    res = ("db-vip", "pgpool") if cluster == "db" else ("lb-vip", "apache")
    for h in hosts:
        if LAB.pid1(h) is None:
            continue
        try:
            mon = LAB.crm_mon(h)
        except Exception:
            continue
        where = {tuple(mon["resources"].get(r, [])) for r in res}
        if len(where) == 1:
            nodes = next(iter(where))
            if len(nodes) == 1:
                return nodes[0]
    return None


def other(cluster, node):
    hosts = ("db01", "db02") if cluster == "db" else ("lb01", "lb02")
    return [h for h in hosts if h != node][0]


def snapshot():
    """What a --dry run must not change: node states and placements of both clusters, pgpool."""
    out = {}
    for hosts in (("db01", "db02"), ("lb01", "lb02")):
        mon = LAB.crm_mon(hosts[0])
        out[hosts[0][:2]] = {"nodes": mon["nodes"], "resources": mon["resources"],
                             "failures": mon["failures"]}
    out["pool"] = LAB.pool_nodes()
    return out


class Markers:
    """Marker rows written through pgpool; `acked` = rows pgpool acknowledged."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:12]
        self.n = 0
        self.acked = []
        self.failed = 0
        LAB.psql(LAB.db_vip, 9999, MARKER_DDL, db=APP_DB)

    def write(self, count=3, attempts=1):
        for _ in range(count):
            self.n += 1
            for attempt in range(attempts):
                proc = LAB.psql(LAB.db_vip, 9999,
                                f"INSERT INTO hatasks_marker VALUES ('{self.tag}', {self.n});",
                                db=APP_DB, check=False, timeout=30)
                if proc.returncode == 0:
                    self.acked.append(self.n)
                    break
                if "duplicate key" in proc.stderr:  # acknowledged on a retry's first try
                    self.acked.append(self.n)
                    break
                time.sleep(2)
            else:
                self.failed += 1

    def on(self, host):
        proc = LAB.psql(LAB.ip(host), 5432,
                        f"SELECT n FROM hatasks_marker WHERE tag = '{self.tag}' ORDER BY n;",
                        db=APP_DB)
        return [int(x) for x in proc.stdout.split()]

    def check_both(self):
        for h in ("db01", "db02"):
            rows = self.on(h)
            missing = sorted(set(self.acked) - set(rows))
            assert not missing, f"marker rows {missing} acknowledged by pgpool are missing on {h}"
            assert rows == self.on("db02" if h == "db01" else "db01"), "backends differ"


def healthy(timeout=90):
    """Wait for the lab's own health check to pass; fail naming what is wrong."""
    deadline = time.monotonic() + timeout
    while True:
        problems = LAB.problems()
        if not problems:
            return
        if time.monotonic() > deadline:
            raise AssertionError("cluster not healthy: " + "; ".join(problems))
        time.sleep(1)


def diagnose(inv, cluster, want, timeout=60, evidence=None):
    """Poll `CLUSTER.diagnose --format json` until it names WANT (the fault takes a few seconds
    to show; with EVIDENCE, until an evidence line contains it too); return the last JSON."""
    deadline = time.monotonic() + timeout
    while True:
        proc = inv(f"{cluster}.diagnose", "--format", "json", check=False, timeout=120)
        assert proc.returncode in (0, 3), proc.stderr
        data = json.loads(proc.stdout)
        assert set(data) >= {"pattern", "evidence", "plan"}
        assert (proc.returncode == 0) == (data["pattern"] == "healthy")
        seen = evidence is None or any(evidence in e for e in data["evidence"])
        if (data["pattern"] == want and seen) or time.monotonic() > deadline:
            return data
        time.sleep(2)


# --------------------------------------------------------------------------- the ten patterns

# (pattern, which node gets the fault: the one running the group or the other one)
DB_CASES = [("power", "other"), ("network", "group"), ("heartbeat", "group"),
            ("pgpool", "group"), ("postgres", "other"), ("degenerated", "other")]
LB_CASES = [("power", "group"), ("network", "group"), ("heartbeat", "group"), ("httpd", "group")]
HUMAN = {"power", "network", "pgpool", "httpd"}


def inject(inv, cluster, pattern, host):
    if pattern == "degenerated":
        inv("pgpool.switch", "--node", host, "--yes")
    else:
        kind = pattern
        inv("lab.fault", "--host", host, "--kind", kind)


@pytest.mark.parametrize("cluster,pattern,where",
                         [("db", p, w) for p, w in DB_CASES] + [("lb", p, w) for p, w in LB_CASES],
                         ids=[f"db-{p}" for p, _ in DB_CASES] + [f"lb-{p}" for p, _ in LB_CASES])
def test_failure_pattern_diagnosed_and_recovered(lab, inv, cluster, pattern, where):
    healthy()
    g = group_node(cluster)
    assert g, f"{cluster} group not started"
    host = g if where == "group" else other(cluster, g)
    marks = Markers()
    marks.write(3)
    assert marks.acked == [1, 2, 3]

    inject(inv, cluster, pattern, host)
    try:
        time.sleep(3)
        marks.write(3, attempts=8)  # pgpool may be moving: retry, keep what it acknowledged
        # the runbook's sign of a start failure is the Failed action: wait until Pacemaker shows it
        data = diagnose(inv, cluster, pattern,
                        evidence="Failed actions" if pattern in ("pgpool", "httpd") else None)
        assert data["pattern"] == pattern, data
        assert data["host"] == host, data
        assert data["plan"], data
        marks.write(2, attempts=8)

        if pattern == "heartbeat":
            # --dry changes nothing, and the scenarios refuse what the state does not allow
            peer = other(cluster, host)
            deadline = time.monotonic() + 40
            while LAB.crm_mon(peer)["nodes"].get(host) != "offline" and time.monotonic() < deadline:
                time.sleep(1)  # the peer notices the lost node after corosync's token timeout
            before = LAB.crm_mon(peer)
            dry = inv("--dry", f"{cluster}.recover", check=False)
            assert "[dry]" in dry.stdout, dry.stdout + dry.stderr
            assert LAB.crm_mon(other(cluster, host))["nodes"] == before["nodes"]
            assert before["nodes"][host] == "offline"
            refused = inv(f"{cluster}.failback", "--yes", check=False)
            assert refused.returncode == 3, refused.stdout + refused.stderr
            assert "OFFLINE" in refused.stderr
            if cluster == "db":
                # the peer takes the group once it sees the node gone: while it starts pgpool
                # the failover refuses for that reason ("not started on one node"); once the
                # group runs there, because no other node is online to take it
                deadline = time.monotonic() + 60
                while group_node(cluster) != peer and time.monotonic() < deadline:
                    time.sleep(1)
                refused = inv("db.failover", "--yes", check=False)
                assert refused.returncode == 3 and "no other node is online" in refused.stderr, \
                    refused.stdout + refused.stderr
        if pattern == "postgres":
            refused = inv("db.maintenance", "--host", other(cluster, host), "--for", "pg-restart",
                          "--yes", check=False)
            assert refused.returncode == 3, refused.stdout + refused.stderr
            assert "no other backend is up" in refused.stderr
            no_yes = inv("db.recover", check=False)
            assert no_yes.returncode == 7, no_yes.stdout + no_yes.stderr
        if pattern in HUMAN:
            early = inv(f"{cluster}.recover", "--yes", check=False, timeout=300)
            assert early.returncode == 3, early.stdout + early.stderr
            assert "needs a human" in early.stderr
    finally:
        if pattern != "degenerated":
            inv("lab.heal", "--host", host)

    rec = inv(f"{cluster}.recover", "--yes", timeout=900, check=False)
    if cluster == "db" and pattern == "network" and "split brain" in rec.stderr:
        # Without fencing, each side of the cut kept its own pgpool; after the merge pgpool may
        # name the other backend as the newest. recover leaves the choice to the operator, who
        # picks the backend recorded first (it took the writes made during the partition).
        assert rec.returncode == 3, rec.stdout[-4000:] + rec.stderr
        m = re.search(r"inv db\.recover --source (\w+) \(the recorded one\)", rec.stderr)
        assert m, rec.stderr
        rec = inv("db.recover", "--yes", "--source", m.group(1), timeout=900, check=False)
    assert rec.returncode == 0, rec.stdout[-4000:] + rec.stderr
    healthy()
    marks.check_both()
    assert marks.failed == 0 or pattern in ("power", "network", "heartbeat")
    after = diagnose(inv, cluster, "healthy", timeout=5)
    assert after["pattern"] == "healthy", after
    if cluster == "lb":
        # the LB cluster fails back by itself: the group is on its preferred node (lb01) again
        assert group_node("lb") == "lb01"


# --------------------------------------------------------------------------- manual scenarios


def _smtp_sink():
    """The SMTP sink of tests/unit/test_notify.py (a socketserver on 127.0.0.1)."""
    import importlib.util
    import threading

    spec = importlib.util.spec_from_file_location("_notify_sink",
                                                  ROOT / "tests" / "unit" / "test_notify.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    server = mod.Sink()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_db_failover_then_failback_round_trip(lab, inv, tmp_path):
    healthy()
    marks = Markers()
    start = group_node("db")
    marks.write(2)
    sink = _smtp_sink()
    conf = tmp_path / "notify.yaml"
    conf.write_text("hatasks:\n  notify:\n    smtp_host: 127.0.0.1\n"
                    f"    smtp_port: {sink.server_address[1]}\n    to: [dba@lab.invalid]\n")
    try:
        out = inv("-f", str(conf), "db.failover", "--yes").stdout
    finally:
        sink.shutdown()
        sink.server_close()
    assert "--- before" in out and "--- after" in out
    # the scenario's summary went out by mail (the runbook's MailTo resource)
    assert len(sink.messages) == 1
    mail = sink.messages[0]["data"].decode()
    assert "Subject: [hatasks] db.failover on " in mail and ": ok" in mail
    assert "--- after" in mail
    moved = group_node("db")
    assert moved == other("db", start)
    # the DB cluster does not fail back by itself: the group stays, both nodes online
    time.sleep(3)
    assert group_node("db") == moved
    assert set(LAB.crm_mon("db01")["nodes"].values()) == {"online"}
    marks.write(2, attempts=5)
    inv("db.failback", "--to", start, "--yes")
    assert group_node("db") == start
    healthy()
    marks.check_both()


def test_lb_failover_then_automatic_failback(lab, inv):
    healthy()
    start = group_node("lb")
    out = inv("lb.failover", "--yes").stdout
    assert group_node("lb") == other("lb", start)
    assert LAB.crm_mon("lb01")["nodes"][start] == "standby"
    assert "lb.failback" in out
    assert other("lb", start) in LAB.http_lb()
    inv("lb.failback", "--yes")
    assert group_node("lb") == start  # came back by itself once online
    healthy()


def test_failback_policies_are_as_in_the_runbook(lab, inv):
    """The LB cluster fails back automatically, the DB cluster does not (CIB scores)."""
    from hatasks import rules

    def policy(host, group):
        cons = LAB.hrun(host, "cibadmin --query --scope constraints").stdout
        dflt = LAB.hrun(host, "cibadmin --query --scope rsc_defaults").stdout
        return rules.parse_policy(cons, dflt, group)

    assert policy("lb01", "grp-apache")["automatic"] is True
    assert policy("db01", "grp-pgpool")["automatic"] is False


def test_maintenance_for_reboot_then_recover(lab, inv):
    healthy()
    marks = Markers()
    g = group_node("db")
    marks.write(2)
    out = inv("db.maintenance", "--host", g, "--for", "reboot", "--yes").stdout
    assert "NEXT: reboot or shut down" in out
    assert group_node("db") == other("db", g)
    pool = dict((h, s) for _, h, s in LAB.pool_nodes())
    assert pool[g] == "down" and pool[other("db", g)] == "up"
    marks.write(2, attempts=5)  # only the other backend gets these
    # the operator reboots it: power off and on (PostgreSQL and the stack start at boot)
    inv("lab.fault", "--host", g, "--kind", "power")
    inv("lab.heal", "--host", g)
    marks.write(1, attempts=5)
    rec = inv("db.recover", "--failback", "--yes", timeout=900, check=False)
    assert rec.returncode == 0, rec.stdout[-4000:] + rec.stderr
    assert group_node("db") == g
    healthy()
    marks.check_both()


def test_maintenance_for_pg_restart_then_recover(lab, inv):
    healthy()
    marks = Markers()
    g = group_node("db")
    target = other("db", g)
    marks.write(2)
    out = inv("db.maintenance", "--host", target, "--for", "pg-restart", "--yes").stdout
    assert "NEXT: PostgreSQL on" in out
    assert group_node("db") == g  # pg-restart: no failover
    marks.write(2, attempts=5)
    rec = inv("db.recover", "--method", "online", "--yes", timeout=900, check=False)
    assert rec.returncode == 0, rec.stdout[-4000:] + rec.stderr
    healthy()
    marks.check_both()


@pytest.mark.parametrize("args", [
    ("db.failover",), ("db.failback", "--to", "db02"), ("db.maintenance", "--host", "db01"),
    ("db.maintenance", "--host", "db02", "--for", "pg-restart"), ("db.recover", "--failback"),
    ("lb.failover",), ("lb.failback",), ("lb.recover",),
], ids=lambda a: "-".join(a))
def test_dry_changes_nothing(lab, inv, args):
    healthy()
    before = snapshot()
    proc = inv("--dry", *args, "--yes", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[dry]" in proc.stdout or "nothing to" in proc.stdout, proc.stdout
    time.sleep(1)
    assert snapshot() == before


@pytest.mark.parametrize("args,code,words", [
    (("db.failback", "--to", "db01", "--yes"), 0, "nothing to fail back"),
    (("db.failover", "--from", "NOTGROUP", "--yes"), 3, "nothing to fail over from"),
    (("db.maintenance", "--host", "lb01", "--yes"), 2, "not a host of the db cluster"),
    (("db.maintenance", "--host", "db01", "--for", "nap", "--yes"), 2, "--for must be one of"),
    (("db.recover", "--method", "rsync", "--yes"), 2, "--method must be one of"),
    (("db.failover",), 7, "without confirmation"),
    (("lb.failover", "--from", "db01", "--yes"), 2, "not a host of the lb cluster"),
], ids=["failback-already-home", "failover-from-wrong-node", "maintenance-lb-host",
        "maintenance-bad-for", "recover-bad-method", "failover-no-yes", "lb-failover-db-host"])
def test_refusals(lab, inv, args, code, words):
    healthy()
    before = snapshot()
    g = group_node("db")
    args = tuple(other("db", g) if a == "NOTGROUP" else a for a in args)
    if args[:2] == ("db.failback", "--to"):
        args = ("db.failback", "--to", g, "--yes")
    proc = inv(*args, check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert words in (proc.stdout + proc.stderr)
    assert snapshot() == before


def test_cron_jobs_meet_a_held_lock(lab, inv):
    """docs/cron.md: a nightly pg.dumpall / weekly pg.vacuum while a scenario holds the DB
    cluster's lock exits 5 with one line naming the holder, and dumps nothing."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, invoke\n"
         "from hatasks import journal\n"
         "ctx = invoke.Context(config=invoke.Config(\n"
         "    overrides={'hatasks': {'state_dir': sys.argv[1]}}))\n"
         "journal.acquire(ctx, 'db', 'db.recover')\n"
         "print('locked', flush=True)\n"
         "time.sleep(120)\n", str(inv.state_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = LAB.hrun("db01", "ls -1A /var/lib/postgresql/dumps 2>/dev/null | wc -l").stdout
        dump = inv("pg.dumpall", "--host", "db01", "--keep", "7", "--quiet", check=False)
        assert dump.returncode == 5, dump.stdout + dump.stderr
        assert dump.stdout == ""
        assert "locked by" in dump.stderr and "db.recover" in dump.stderr
        assert len(dump.stderr.strip().splitlines()) == 1
        vac = inv("pg.vacuum", "--host", "db01", "--quiet", check=False)
        assert vac.returncode == 5 and "locked by" in vac.stderr
        after = LAB.hrun("db01", "ls -1A /var/lib/postgresql/dumps 2>/dev/null | wc -l").stdout
        assert after == before
        scen = inv("db.failover", "--yes", check=False)
        assert scen.returncode == 5 and "locked by" in scen.stderr
    finally:
        holder.kill()
        holder.wait()
    ok = inv("pg.dumpall", "--host", "db01", "--keep", "7", "--quiet", check=False)
    assert ok.returncode == 0 and ok.stdout == "", ok.stdout + ok.stderr
