"""hb tasks: the exact commands sent to each host, validation before anything runs, --dry.

The network is the shared FakeRemote (tests/unit/conftest.py): the real remote.run decides what
runs under --dry; crm_mon answers come from captured lab outputs, SHOW pool_nodes from the lab's
capture, and the newest-data record is read back from the real journal.
"""

import json
import subprocess

import invoke
import pytest

from hatasks import crm, crmmon, hb, journal
from hatasks.errors import HaError, StateError, UnreachableError, UsageError

from conftest import FIXTURES, fail, make_ctx, psql_rows

SAMPLES = FIXTURES / "lab-samples"
CAPTURES = FIXTURES / "captures" / "pacemaker"
POOL_NODES = psql_rows((SAMPLES / "show_pool_nodes.txt").read_text())   # both up, db01 main

DB_INITIAL = (SAMPLES / "crm_mon-1_xml_db_initial.xml").read_text()          # group on db01
DB01_STANDBY = (SAMPLES / "crm_mon-1_xml_db01_standby.xml").read_text()      # group on db02
PGPOOL_KILLED = (SAMPLES / "crm_mon-1_xml_pgpool_killed.xml").read_text()    # failure on db02
PGPOOL_CLEAN = PGPOOL_KILLED.split("<failures>")[0] + PGPOOL_KILLED.split("</failures>")[1]
LB = (SAMPLES / "crm_mon-1_xml_lb.xml").read_text()
DB01_DOWN = (CAPTURES / "db01_down.xml").read_text()                         # db01 OFFLINE

CIB_RESOURCES = """<resources>
  <group id="grp-pgpool">
    <primitive id="db-vip" class="ocf" provider="heartbeat" type="IPaddr2"/>
    <primitive id="pgpool" class="ocf" provider="lab" type="pgpool"/>
  </group>
</resources>"""

STOP = "/opt/hatasks-lab/bin/stack stop"
START = "/opt/hatasks-lab/bin/stack start"


class FakeCluster:
    """Answers commands like the lab would, behind the shared FakeRemote; `after` maps a
    mutating command to the crm_mon state it leads to."""

    def __init__(self, fake, state, after=None, down=(), cib=CIB_RESOURCES, extra=None):
        self.fake = fake
        self.state = state
        self.after = after or {}
        fake.down |= set(down)
        self.cib = cib
        self.extra = extra or {}
        self.dc_states = []  # successive answers of crmadmin -S (then S_IDLE)
        fake.on(lambda host, command: True, lambda host, command: self.answer(host, command))

    @property
    def sent(self):
        return [(c.host, c.command) for c in self.fake.calls]

    def answer(self, host, command):
        if command == crm.CRM_MON:
            return 0, self.state
        if command == hb.CIB_RESOURCES:
            return 0, self.cib
        if command.startswith("crmadmin -S "):
            dc_state = self.dc_states.pop(0) if self.dc_states else "S_IDLE"
            return 0, f"Controller on {command.split()[-1]} in state {dc_state}: ok\n"
        if command in self.after:
            self.state = self.after[command]
            return 0, ""
        if command in self.extra:
            return self.extra[command]
        raise AssertionError(f"unexpected command on {host}: {command}")

    def mutating(self):
        return [(h, c) for h, c in self.sent
                if c not in (crm.CRM_MON, hb.CIB_RESOURCES) and not c.startswith("crmadmin -S ")]


@pytest.fixture
def lab(fake, monkeypatch):
    """Install a FakeCluster on the FakeRemote; returns a function to set it."""
    monkeypatch.setattr(crm, "POLL_INTERVAL", 0.01)
    return lambda *args, **kwargs: FakeCluster(fake, *args, **kwargs)


# --------------------------------------------------------------------------- status


def test_status_reads_crm_mon_xml_once_on_first_node(lab, ctx, capsys):
    fake = lab(DB_INITIAL)
    hb.status_task(ctx, cluster="db", format="json")
    assert fake.sent == [("db01", "crm_mon -1 --output-as=xml")]
    data = json.loads(capsys.readouterr().out)
    assert {n["name"]: n["state"] for n in data["nodes"]} == {"db01": "online", "db02": "online"}
    assert {r["id"]: r["node"] for r in data["resources"]} == {"db-vip": "db01", "pgpool": "db01"}
    assert data["failed_actions"] == []


def test_status_falls_back_to_the_peer_when_first_node_is_down(lab, ctx, capsys):
    fake = lab(DB_INITIAL, down={"db01"})
    hb.status_task(ctx, cluster="db", format="table")
    assert fake.sent == [("db02", crm.CRM_MON)]
    out = capsys.readouterr().out
    assert "read on db02" in out and "db01 did not answer" in out


def test_status_without_cluster_reads_every_cluster(lab, ctx, capsys):
    cluster = lab(DB_INITIAL)
    # both clusters answer with their own view
    cluster.fake.on(lambda host, cmd: host.startswith("lb") and cmd == crm.CRM_MON, (0, LB))
    fake = cluster
    hb.status_task(ctx, format="json")
    # the clusters are read at once: in any order, each once
    assert sorted(fake.sent) == [("db01", crm.CRM_MON), ("lb01", crm.CRM_MON)]
    data = json.loads(capsys.readouterr().out)
    assert data["clusters"] == ["db", "lb"]
    assert {n["cluster"] for n in data["nodes"]} == {"db", "lb"}


def test_status_of_every_cluster_asks_all_of_them_before_failing_on_the_first(lab, ctx):
    cluster = lab(DB_INITIAL, down={"db01", "db02"})
    cluster.fake.on(lambda host, cmd: host.startswith("lb") and cmd == crm.CRM_MON, (0, LB))
    with pytest.raises(UnreachableError, match="cluster db: no node answered"):
        hb.status(ctx)
    # lb was asked in parallel, not skipped because db (first in the inventory) failed
    assert ("lb01", crm.CRM_MON) in cluster.sent


def test_status_with_a_node_offline_shows_it_and_exits_3(lab, ctx, capsys):
    lab(DB01_DOWN)
    with pytest.raises(invoke.Exit) as exc:
        hb.status_task(ctx, cluster="db", format="table")
    assert exc.value.code == HaError.STATE
    out = capsys.readouterr()
    assert "OFFLINE" in out.out  # the picture is printed as before
    assert out.err == "hatasks: error: node(s) OFFLINE: db01 (db)\n"


def test_status_shows_failed_actions(lab, ctx, capsys):
    lab(PGPOOL_KILLED)
    hb.status_task(ctx, cluster="db", format="table")
    out = capsys.readouterr().out
    assert "FAILED ACTIONS" in out and "pgpool" in out and "monitor" in out


def test_status_unknown_cluster_sends_nothing(lab, ctx):
    fake = lab(DB_INITIAL)
    with pytest.raises(UsageError, match="unknown cluster"):
        hb.status(ctx, "web")
    assert fake.sent == []


def test_status_with_the_stack_stopped_everywhere_says_why(lab, ctx):
    fake = lab((CAPTURES / "not_connected.xml").read_text())
    fake.fake.on(crm.CRM_MON, (102, fake.state))
    with pytest.raises(StateError, match="db01: crm_mon failed .code 102, Not connected.*db02"):
        hb.status(ctx, "db")
    assert fake.sent == [("db01", crm.CRM_MON), ("db02", crm.CRM_MON)]


def test_status_all_nodes_unreachable_names_them(lab, ctx):
    lab(DB_INITIAL, down={"db01", "db02"})
    with pytest.raises(UnreachableError, match="db01.*db02"):
        hb.status(ctx, "db")


# --------------------------------------------------------------------------- standby / online


def test_standby_sends_crm_standby_and_waits_for_the_move(lab, ctx):
    fake = lab(DB_INITIAL, after={"crm_standby -N db01 -v on": DB01_STANDBY})
    after = hb.standby(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == [("db01", "crm_standby -N db01 -v on")]
    assert crmmon.node_state(after, "db01") == "standby"
    assert crmmon.group_node(after, "grp-pgpool") == "db02"


def test_standby_from_the_state_its_caller_read_under_the_lock(lab, ctx):
    # db.failover reads the state under the lock while the newest-data record finishes: the
    # standby decides on it and sends the action without reading crm_mon first
    fake = lab(DB_INITIAL, after={"crm_standby -N db01 -v on": DB01_STANDBY})
    state = dict(crmmon.parse_crm_mon_xml(DB_INITIAL), cluster="db", read_on="db01",
                 unanswered={})
    hb.standby(ctx, "db01", timeout=5, yes=True, state=state)
    assert fake.sent[0] == ("db01", "crm_standby -N db01 -v on")
    # and it refuses on that state as on one it read itself
    down = dict(state, nodes=[dict(n, state="offline") if n["name"] == "db02" else n
                              for n in state["nodes"]])
    with pytest.raises(StateError, match="no other db node is online"):
        hb.standby(ctx, "db01", timeout=5, yes=True, state=down)


def test_standby_task_of_a_lb_node_derives_the_cluster(lab, ctx):
    # lb02 runs grp-apache in this capture; crm_mon keeps showing it there, online
    fake = lab(LB, after={"crm_standby -N lb02 -v on": LB})
    with pytest.raises(HaError) as err:
        hb.standby(ctx, "lb02", timeout=0.1, yes=True)
    assert err.value.code == HaError.NOT_CONVERGED
    assert "lb02 standby, grp-apache started on lb01" in err.value.message
    assert fake.mutating() == [("lb01", "crm_standby -N lb02 -v on")]
    assert all(h.startswith("lb") for h, _ in fake.sent)


def test_standby_not_converged_names_expected_and_seen(lab, ctx):
    fake = lab(DB_INITIAL, after={"crm_standby -N db01 -v on": DB_INITIAL})
    with pytest.raises(HaError) as err:
        hb.standby(ctx, "db01", timeout=0.1, yes=True)
    assert err.value.code == HaError.NOT_CONVERGED
    assert "grp-pgpool started on db02" in err.value.message
    assert "db01 online" in err.value.message
    assert len(fake.mutating()) == 1


def test_standby_refused_when_the_other_node_is_offline(lab, ctx):
    fake = lab(DB01_DOWN)
    with pytest.raises(StateError, match="no other db node is online"):
        hb.standby(ctx, "db02", timeout=1, yes=True)
    assert fake.mutating() == []


@pytest.mark.parametrize("bad", ["db01;id", "db01 db02", "$(id)", "", "-v"])
def test_standby_rejects_metacharacters_before_anything_runs(lab, ctx, bad):
    fake = lab(DB_INITIAL)
    with pytest.raises(UsageError):
        hb.standby(ctx, bad, yes=True)
    assert fake.sent == []


def test_standby_unknown_node_lists_known_hosts_and_sends_nothing(lab, ctx):
    fake = lab(DB_INITIAL)
    with pytest.raises(UsageError, match="known hosts: db01, db02, lb01, lb02"):
        hb.standby(ctx, "db09", yes=True)
    assert fake.sent == []


def test_standby_task_exits_with_usage_code(lab, ctx, capsys):
    fake = lab(DB_INITIAL)
    with pytest.raises(invoke.Exit) as err:
        hb.standby_task(ctx, node="db01;id", yes=True)
    assert err.value.code == HaError.USAGE
    assert capsys.readouterr().err.count("\n") == 1
    assert fake.sent == []


def test_standby_under_dry_sends_only_probes(lab, tmp_path, capsys):
    fake = lab(DB_INITIAL, after={"crm_standby -N db01 -v on": DB01_STANDBY})
    hb.standby(make_ctx(tmp_path, dry=True), "db01", timeout=5, yes=True)
    assert fake.mutating() == []
    assert all(c == crm.CRM_MON for _, c in fake.sent)
    assert "crm_standby -N db01 -v on" in capsys.readouterr().out


def test_online_sends_standby_off_and_waits(lab, ctx):
    fake = lab(DB01_STANDBY, after={"crm_standby -N db01 -v off": PGPOOL_CLEAN})
    after = hb.online(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == [("db01", "crm_standby -N db01 -v off")]
    assert crmmon.node_state(after, "db01") == "online"


def test_online_waits_until_the_dc_is_idle_twice_in_a_row(lab, ctx):
    fake = lab(DB01_STANDBY, after={"crm_standby -N db01 -v off": PGPOOL_CLEAN})
    fake.dc_states = ["S_TRANSITION_ENGINE", "S_IDLE", "S_POLICY_ENGINE", "S_IDLE", "S_IDLE"]
    hb.online(ctx, "db01", timeout=5, yes=True)
    dc_checks = [(h, c) for h, c in fake.sent if c.startswith("crmadmin")]
    assert dc_checks == [("db01", "crmadmin -S db01")] * 5
    assert fake.dc_states == []


def test_online_asks_the_dc_while_its_first_poll_reads_crm_mon(lab, ctx):
    # the first read after standby off often meets the check already: the DC the caller saw
    # is asked at the same time, not after it (one round trip instead of two); its answer
    # still needs a second idle poll in a row
    import threading

    fake = lab(DB01_STANDBY, after={"crm_standby -N db01 -v off": PGPOOL_CLEAN})
    asked, off = threading.Event(), threading.Event()
    seen_asked = []
    answer = fake.answer

    def answering(host, command):
        if command.startswith("crmadmin -S "):
            asked.set()
        if command == crm.CRM_MON and off.is_set() and not seen_asked:
            seen_asked.append(asked.wait(5))    # the question is out before this read ends
        if command == "crm_standby -N db01 -v off":
            off.set()
        return answer(host, command)

    fake.answer = answering
    state = dict(crmmon.parse_crm_mon_xml(DB01_STANDBY), cluster="db", read_on="db01",
                 unanswered={})
    hb.online(ctx, "db01", timeout=5, yes=True, state=state)
    assert seen_asked == [True]
    assert [c for h, c in fake.sent if c.startswith("crmadmin")] == ["crmadmin -S db01"] * 2


def test_online_of_an_offline_node_is_refused(lab, ctx):
    fake = lab(DB01_DOWN)
    with pytest.raises(StateError, match="hb.start"):
        hb.online(ctx, "db01", yes=True)
    assert fake.mutating() == []


# --------------------------------------------------------------------------- cleanup


def test_cleanup_sends_crm_resource_cleanup_and_waits_for_the_failure_to_go(lab, ctx):
    fake = lab(PGPOOL_KILLED, after={"crm_resource --cleanup -r pgpool -N db02": PGPOOL_CLEAN})
    after = hb.cleanup(ctx, "pgpool", "db02", timeout=5, yes=True)
    assert fake.mutating() == [("db01", "crm_resource --cleanup -r pgpool -N db02")]
    assert ("db01", "cibadmin --query --scope resources") in fake.sent
    assert after["failed_actions"] == []


def test_cleanup_not_converged_while_the_failure_stays(lab, ctx):
    lab(PGPOOL_KILLED, after={"crm_resource --cleanup -r pgpool -N db02": PGPOOL_KILLED})
    with pytest.raises(HaError) as err:
        hb.cleanup(ctx, "pgpool", "db02", timeout=0.1, yes=True)
    assert err.value.code == HaError.NOT_CONVERGED
    assert "no failed action of pgpool on db02" in err.value.message


def test_cleanup_unknown_resource_is_refused_before_acting(lab, ctx):
    fake = lab(PGPOOL_KILLED)
    with pytest.raises(UsageError, match="unknown resource 'apache'.*db-vip, grp-pgpool, pgpool"):
        hb.cleanup(ctx, "apache", "db02", yes=True)
    assert fake.mutating() == []


def test_cleanup_bad_resource_name_sends_nothing(lab, ctx):
    fake = lab(PGPOOL_KILLED)
    with pytest.raises(UsageError):
        hb.cleanup(ctx, "pgpool`id`", "db02", yes=True)
    assert fake.sent == []


def test_cleanup_under_dry_sends_no_cleanup(lab, tmp_path):
    fake = lab(PGPOOL_KILLED, after={"crm_resource --cleanup -r pgpool -N db02": PGPOOL_CLEAN})
    hb.cleanup(make_ctx(tmp_path, dry=True), "pgpool", "db02", yes=True)
    assert fake.mutating() == []


# --------------------------------------------------------------------------- stack start / stop


@pytest.fixture
def pool_nodes(fake):
    """pgpool answers SHOW pool_nodes through the VIP with the lab's capture (both up)."""
    fake.sql("SHOW pool_nodes", POOL_NODES)
    return fake


def pgpool_down(fake):
    fake.sql("SHOW pool_nodes", fail("connection to 10.231.0.100:9999 refused"))


def test_stop_records_newest_then_runs_stack_stop_and_checks_from_the_peer(lab, ctx, pool_nodes):
    fake = lab(DB_INITIAL, after={STOP: DB01_DOWN})
    after = hb.stop(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == [("db01", STOP)]
    rec = journal.newest(ctx, "db")
    assert rec["newest"] == "db01" and rec["evidence"]["in_sync"] is True
    assert "hb.stop --host db01" in rec["evidence"]["reason"]
    # before and after: read on the peer only
    assert {h for h, c in fake.sent if c == crm.CRM_MON} == {"db02"}
    assert crmmon.node_state(after, "db01") == "offline"


def test_stop_refuses_when_newest_cannot_be_recorded_and_none_was(lab, ctx, fake):
    pgpool_down(fake)
    cluster = lab(DB_INITIAL, after={STOP: DB01_DOWN})
    with pytest.raises(StateError, match="newest-data backend.*pgpool does not answer"):
        hb.stop(ctx, "db01", timeout=5, yes=True)
    assert cluster.mutating() == []


def test_stop_goes_on_with_an_earlier_newest_record(lab, ctx, fake, capsys):
    journal.record_newest(ctx, "db", "db02", {"source": "test", "degenerated": True})
    pgpool_down(fake)
    cluster = lab(DB_INITIAL, after={STOP: DB01_DOWN})
    hb.stop(ctx, "db01", timeout=5, yes=True)
    assert cluster.mutating() == [("db01", STOP)]
    assert "earlier record stays the reference: db02" in capsys.readouterr().err


def test_stop_forced_without_any_newest_record(lab, ctx, fake):
    pgpool_down(fake)
    cluster = lab(DB_INITIAL, after={STOP: DB01_DOWN})
    hb.stop(ctx, "db01", timeout=5, force=True, yes=True)
    assert cluster.mutating() == [("db01", STOP)]
    assert journal.newest(ctx, "db") is None


def test_stop_refused_when_it_would_stop_the_service(lab, ctx, pool_nodes):
    fake = lab(DB01_DOWN)
    with pytest.raises(StateError, match="service would stop"):
        hb.stop(ctx, "db02", yes=True)
    assert fake.mutating() == []
    assert pool_nodes.queries == [] and journal.newest(ctx, "db") is None


def test_stop_under_dry_sends_nothing_and_records_nothing(lab, tmp_path, pool_nodes, capsys):
    fake = lab(DB_INITIAL, after={STOP: DB01_DOWN})
    dry = make_ctx(tmp_path, dry=True)
    hb.stop(dry, "db01", yes=True)
    assert fake.mutating() == []
    assert pool_nodes.queries == [] and journal.newest(dry, "db") is None
    assert STOP in capsys.readouterr().out


def test_stop_on_lb_does_not_record_newest(lab, ctx, pool_nodes):
    lb01_down = LB.replace('name="lb01" id="1" online="true"', 'name="lb01" id="1" online="false"')
    fake = lab(LB, after={STOP: lb01_down})
    hb.stop(ctx, "lb01", timeout=5, yes=True)
    assert fake.mutating() == [("lb01", STOP)]
    assert pool_nodes.queries == []


def test_start_runs_stack_start_and_waits_for_online(lab, ctx):
    fake = lab(DB01_DOWN, after={START: DB_INITIAL})
    after = hb.start(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == [("db01", START)]
    assert crmmon.node_state(after, "db01") == "online"


def test_start_of_an_online_node_does_nothing(lab, ctx):
    fake = lab(DB_INITIAL)
    hb.start(ctx, "db01", yes=True)
    assert fake.mutating() == []


def test_start_when_the_peer_still_sees_the_node_online_but_its_own_stack_is_down(lab, ctx):
    """chaos seed 11 step 9: the stack of db01 killed (a Heartbeat fault); db02 had not noticed
    yet and still showed db01 online, so hb.start said "already online" while crm_mon failed on
    db01 itself (db.recover then gave up). The host's own crm_mon decides: the stack is started,
    and the wait reads the host itself."""
    fake = lab(DB_INITIAL, after={START: DB_INITIAL})
    refused = (102, "", "crm_mon: Connection to cluster failed: Connection refused")
    started = []
    answer = fake.answer

    def own_stack(host, command):
        if host == "db01" and command == crm.CRM_MON and not started:
            return refused
        if command == START:
            started.append(host)
        return answer(host, command)

    fake.fake.on(lambda host, command: True, own_stack)
    after = hb.start(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == [("db01", START)]
    assert after["read_on"] == "db01" and crmmon.node_state(after, "db01") == "online"
    # db01 unreachable: nothing to learn on it, the peer's view stands (nothing started)
    fake.fake.calls.clear()
    fake.fake.down.add("db01")
    hb.start(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == []


def test_start_ends_its_wait_once_the_host_stops_answering(lab, ctx, monkeypatch):
    """chaos seed 31 step 8 (fencing on): lb01 was fenced (powered off) just after hb.start ran
    its stack start, and the wait for it to come online went on for its whole timeout. Once the
    host has not answered ssh on two polls in a row, nothing can show it online: the wait ends
    naming it (UnreachableError, exit 4), not after the timeout as NOT_CONVERGED."""
    monkeypatch.setattr(crm.time, "sleep", lambda s: None)
    fake = lab(DB01_DOWN)   # the start changes nothing a peer sees
    answer = fake.answer

    def fenced(host, command):
        if command == START:
            fake.fake.down.add("db01")   # powered off right after the start
            return (0, "", "")
        return answer(host, command)

    fake.fake.on(lambda host, command: True, fenced)
    with pytest.raises(UnreachableError, match="db01 stopped answering while its stack"):
        hb.start(ctx, "db01", timeout=60, yes=True)
    assert fake.mutating() == [("db01", START)]


def test_start_unreachable_host_names_it(lab, ctx):
    lab(DB01_DOWN, down={"db01"})
    with pytest.raises(UnreachableError, match="db01"):
        hb.start(ctx, "db01", timeout=5, yes=True)


# --------------------------------------------------------------------------- log


def test_log_command_keeps_only_the_error_lines_of_a_real_log(tmp_path):
    log = tmp_path / "my logs" / "pacemaker.log"
    log.parent.mkdir()
    error = ("Nov 25 16:48:08.123 db02 pacemaker-controld[123] (log_executor_event) \t"
             "error: Result of monitor operation for pgpool on db02: not running")
    fatal = "Nov 25 16:48:09 db02 heartbeat: [123]: ERROR: Client child exited"
    notice = ("Nov 25 16:48:08.100 db02 pacemaker-controld[123] (do_state_transition) \t"
              "notice: State transition S_IDLE -> S_POLICY_ENGINE")
    log.write_text("\n".join([notice, error, notice, fatal, notice]) + "\n")
    res = subprocess.run(["sh", "-c", hb.log_command(str(log), 1)], capture_output=True,
                         text=True)
    assert res.stdout.splitlines() == [fatal]
    res = subprocess.run(["sh", "-c", hb.log_command(str(log), 20)], capture_output=True,
                         text=True)
    assert res.stdout.splitlines() == [error, fatal]
    missing = subprocess.run(["sh", "-c", hb.log_command(str(log) + ".gone", 5)])
    assert missing.returncode != 0


def test_log_reads_the_inventory_log_and_shows_its_lines(lab, ctx, capsys):
    cmd = hb.log_command("/var/log/pacemaker/pacemaker.log", 20)
    line = ("Nov 25 16:48:08.123 db02 pacemaker-controld[123] (log_executor_event) \t"
            "error: Result of monitor operation for pgpool on db02: not running")
    fake = lab(DB_INITIAL, extra={cmd: (0, line + "\n")})
    hb.log_task(ctx, host="db02", lines=20, format="table")
    assert fake.sent == [("db02", cmd)]
    assert "Result of monitor operation for pgpool" in capsys.readouterr().out


def test_log_keeps_lines_the_parser_does_not_understand(lab, ctx):
    cmd = hb.log_command("/var/log/pacemaker/pacemaker.log", 50)
    padded = ("Nov 25 17:22:27.101 db01 pacemakerd          [67] (pcmk_child_exit) \t"
              "error: pacemaker-execd[70] exited with status 2")
    plain = ("Nov 25 16:49:57.974 db01 pacemaker-schedulerd[89] (pcmk__log_transition_summary) \t"
             "error: Calculated transition 23 (with errors)")
    lab(DB_INITIAL, extra={cmd: (0, padded + "\n" + plain + "\n")})
    data = hb.log(ctx, "db01")
    assert [e["line"] for e in data["entries"]] == [padded, plain]
    assert data["entries"][1]["level"] == "error"


def test_log_path_with_a_space_is_quoted():
    assert "'/var/log/my logs/ha.log'" in hb.log_command("/var/log/my logs/ha.log", 5)


def test_log_unreadable_file_is_a_state_error(lab, ctx):
    cmd = hb.log_command("/var/log/pacemaker/pacemaker.log", 50)
    lab(DB_INITIAL, extra={cmd: (1, "")})
    with pytest.raises(StateError, match="cannot read the cluster log"):
        hb.log(ctx, "db01")


def test_log_bad_lines_sends_nothing(lab, ctx):
    fake = lab(DB_INITIAL)
    with pytest.raises(UsageError):
        hb.log(ctx, "db01", lines="0")
    assert fake.sent == []


# --------------------------------------------------------------------------- fence

FENCE_HISTORY_EMPTY = '<pacemaker-result api-version="2.25" request="stonith_admin --history db02 --output-as=xml"><fence_history/><status code="0" message="OK"/></pacemaker-result>'
FENCE_HISTORY_DONE = ('<pacemaker-result api-version="2.25" request="stonith_admin"><fence_history>'
                      '<fence_event status="success" action="off" target="db02" client="stonith_admin.4242" '
                      'origin="db01" delegate="db01" completed="2026-11-30 19:20:00Z"/>'
                      '</fence_history><status code="0" message="OK"/></pacemaker-result>')


def test_parse_fence_history():
    assert hb.parse_fence_history(FENCE_HISTORY_EMPTY) == []
    [e] = hb.parse_fence_history(FENCE_HISTORY_DONE)
    assert (e["action"], e["target"], e["status"], e["delegate"]) == ("off", "db02", "success", "db01")


def test_fence_refused_without_fencing(ctx, fake, monkeypatch):
    from hatasks import crm
    monkeypatch.setattr(crm, "crm_status", lambda *a, **k: {"read_on": "db01", "nodes": [],
                                                           "resources": [], "failed_actions": []})
    monkeypatch.setattr(crm, "summary", lambda st: "")
    fake.on("crm_attribute --type crm_config --name stonith-enabled", (0, "false\n"))
    with pytest.raises(HaError) as exc:
        hb.fence(ctx, "db02", yes=True)
    assert exc.value.code == HaError.STATE and "stonith-enabled is false" in exc.value.message
    assert not [c for c in fake.commands if c.startswith("stonith_admin --fence")]


def test_fence_runs_on_the_peer_and_is_verified(ctx, fake, monkeypatch):
    from hatasks import crm, crmmon, newest
    states = {"read_on": "db01", "nodes": [], "resources": [], "failed_actions": []}
    monkeypatch.setattr(crm, "crm_status", lambda *a, **k: states)
    monkeypatch.setattr(crm, "summary", lambda st: "")
    monkeypatch.setattr(crmmon, "others_online", lambda st, n: ["db01"])
    monkeypatch.setattr(crm, "wait_for", lambda ctx, c, check, *a, **k: states)
    monkeypatch.setattr(newest, "record_before_stop", lambda *a, **k: {"recorded": True})
    fake.on("crm_attribute --type crm_config --name stonith-enabled", (0, "true\n"))
    from conftest import Seq
    fake.on("stonith_admin --history db02", Seq([(0, FENCE_HISTORY_EMPTY), (0, FENCE_HISTORY_DONE)]))
    fake.on("stonith_admin --fence db02", (0, ""))
    hb.fence(ctx, "db02", yes=True)
    [cmd] = [c for c in fake.calls if "stonith_admin --fence" in c.command]
    assert cmd.host == "db01" and cmd.command == "stonith_admin --fence db02 --timeout 120"


def test_fence_not_converged_without_a_new_event(ctx, fake, monkeypatch):
    from hatasks import crm, crmmon, newest
    states = {"read_on": "db01", "nodes": [], "resources": [], "failed_actions": []}
    monkeypatch.setattr(crm, "crm_status", lambda *a, **k: states)
    monkeypatch.setattr(crm, "summary", lambda st: "")
    monkeypatch.setattr(crmmon, "others_online", lambda st, n: ["db01"])
    monkeypatch.setattr(newest, "record_before_stop", lambda *a, **k: {"recorded": True})
    fake.on("crm_attribute --type crm_config --name stonith-enabled", (0, "true\n"))
    fake.on("stonith_admin --history db02", (0, FENCE_HISTORY_DONE))
    fake.on("stonith_admin --fence db02", (0, ""))
    with pytest.raises(HaError) as exc:
        hb.fence(ctx, "db02", yes=True)
    assert exc.value.code == HaError.NOT_CONVERGED


def test_parse_fence_history_of_the_lab():
    """stonith_admin --history as Pacemaker 2.1.5 printed it on the fenced lab."""
    text = (FIXTURES / "fencing" / "stonith_admin_history_db02.xml").read_text()
    [e] = hb.parse_fence_history(text)
    assert (e["action"], e["target"], e["status"], e["delegate"], e["origin"]) == (
        "off", "db02", "success", "db01", "db01")
    assert e["completed"].startswith("2026-11-30 ")




def test_lb_wait_for_a_failback_ends_once_the_node_stops_answering(ctx, monkeypatch):
    """chaos seed 31 step 19 (fencing on): lb.recover waited 60 s for grp-apache to fail back
    to lb01 while lb02 had fenced lb01 (powered off) again; exit 6. The wait now gives up once
    lb01 has not answered ssh on two polls in a row (exit 4), and the next recover names its
    power."""
    import types

    from hatasks import lb, remote

    got = {}
    monkeypatch.setattr(crm, "wait_for", lambda *a, **kw: got.update(kw))
    monkeypatch.setattr(lb, "wait_serving", lambda *a, **kw: None)

    def unreachable(ctx, host, command, **kw):
        raise UnreachableError(f"{host.name} (10.0.0.21:22) unreachable: timed out")

    monkeypatch.setattr(remote, "run", unreachable)
    run = types.SimpleNamespace(ctx=ctx, cluster=remote.inventory(ctx).cluster("lb"), timeout=60)
    lb._wait_started(run, {"node": "lb01"})
    give_up = got["give_up"]
    assert give_up(None) is None                  # one poll missed: go on
    err = give_up(None)
    assert isinstance(err, UnreachableError)
    assert "lb01 stopped answering while grp-apache on it was awaited" in err.message
    got.clear()
    lb._wait_started(run, {})                     # no node named: nothing to give up on
    assert got["give_up"] is None
