"""hb tasks: the exact commands sent to each host, validation before anything runs, --dry.

The ssh layer is replaced by a fake connection (remote.connection is patched), so the real
remote.run decides what runs under --dry; crm_mon answers come from captured lab outputs.
"""

import json
import pathlib
import sys
import types

import invoke
import pytest

from hatasks import hb, remote
from hatasks.errors import HaError, StateError, UnreachableError, UsageError

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "fixtures" / "lab-samples"
CAPTURES = ROOT / "tests" / "fixtures" / "captures" / "pacemaker"

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
    """Answers commands like the lab would; `after` maps a mutating command to the crm_mon
    state it leads to. Records (host, command) of every command that reached a host."""

    def __init__(self, state, after=None, down=(), cib=CIB_RESOURCES, extra=None):
        self.state = state
        self.after = after or {}
        self.down = set(down)
        self.cib = cib
        self.extra = extra or {}
        self.sent = []
        self.dc_states = []  # successive answers of crmadmin -S (then S_IDLE)

    def answer(self, host, command):
        self.sent.append((host, command))
        if command == hb.CRM_MON:
            return self.state, "", 0
        if command == hb.CIB_RESOURCES:
            return self.cib, "", 0
        if command.startswith("crmadmin -S "):
            dc_state = self.dc_states.pop(0) if self.dc_states else "S_IDLE"
            return f"Controller on {command.split()[-1]} in state {dc_state}: ok\n", "", 0
        if command in self.after:
            self.state = self.after[command]
            return "", "", 0
        if command in self.extra:
            return self.extra[command]
        raise AssertionError(f"unexpected command on {host}: {command}")

    def mutating(self):
        return [(h, c) for h, c in self.sent
                if c not in (hb.CRM_MON, hb.CIB_RESOURCES) and not c.startswith("crmadmin -S ")]


class FakeConn:
    user = "root"

    def __init__(self, host, cluster):
        self.host = host
        self.cluster = cluster

    def run(self, line, **kw):
        out, err, rc = self.cluster.answer(self.host, line)
        return invoke.Result(stdout=out, stderr=err, exited=rc, command=line)


@pytest.fixture
def lab(mocker):
    """Install a FakeCluster behind remote.connection; returns a function to set it."""
    holder = {}

    def connection(ctx, host):
        name = host.name if hasattr(host, "name") else host
        fake = holder["cluster"]
        if name in fake.down:
            raise UnreachableError(f"{name} (10.231.0.x:22) unreachable: timed out")
        return FakeConn(name, fake)

    mocker.patch.object(remote, "connection", side_effect=connection)
    mocker.patch.object(hb, "POLL_INTERVAL", 0.01)

    def install(*args, **kwargs):
        holder["cluster"] = FakeCluster(*args, **kwargs)
        return holder["cluster"]

    return install


def make_ctx(tmp_path, dry=False):
    overrides = {"hatasks": {"inventory": str(ROOT / "hosts.ini"),
                             "state_dir": str(tmp_path / "state"),
                             "connect_timeout": 10, "format": "table"}}
    if dry:
        overrides["run"] = {"dry": True}
    return invoke.MockContext(config=invoke.Config(overrides=overrides))


@pytest.fixture
def ctx(tmp_path):
    return make_ctx(tmp_path)


# --------------------------------------------------------------------------- status


def test_status_reads_crm_mon_xml_once_on_first_node(lab, ctx, capsys):
    fake = lab(DB_INITIAL)
    hb.status(ctx, cluster="db", format="json")
    assert fake.sent == [("db01", "crm_mon -1 --output-as=xml")]
    data = json.loads(capsys.readouterr().out)
    assert {n["name"]: n["state"] for n in data["nodes"]} == {"db01": "online", "db02": "online"}
    assert {r["id"]: r["node"] for r in data["resources"]} == {"db-vip": "db01", "pgpool": "db01"}
    assert data["failed_actions"] == []


def test_status_falls_back_to_the_peer_when_first_node_is_down(lab, ctx, capsys):
    fake = lab(DB_INITIAL, down={"db01"})
    hb.status(ctx, cluster="db", format="table")
    assert fake.sent == [("db02", hb.CRM_MON)]
    out = capsys.readouterr().out
    assert "read on db02" in out and "db01 did not answer" in out


def test_status_without_cluster_reads_every_cluster(lab, ctx, capsys):
    fake = lab(DB_INITIAL)
    # both clusters answer with their own view
    fake.answer = (lambda orig: lambda host, cmd: (
        (fake.sent.append((host, cmd)) or (LB, "", 0)) if host.startswith("lb") else orig(host, cmd)
    ))(fake.answer)
    hb.status(ctx, format="json")
    assert fake.sent == [("db01", hb.CRM_MON), ("lb01", hb.CRM_MON)]
    data = json.loads(capsys.readouterr().out)
    assert data["clusters"] == ["db", "lb"]
    assert {n["cluster"] for n in data["nodes"]} == {"db", "lb"}


def test_status_shows_failed_actions(lab, ctx, capsys):
    lab(PGPOOL_KILLED)
    hb.status(ctx, cluster="db", format="table")
    out = capsys.readouterr().out
    assert "FAILED ACTIONS" in out and "pgpool" in out and "monitor" in out


def test_status_unknown_cluster_sends_nothing(lab, ctx):
    fake = lab(DB_INITIAL)
    with pytest.raises(UsageError, match="unknown cluster"):
        hb.status_step(ctx, "web")
    assert fake.sent == []


def test_status_with_the_stack_stopped_everywhere_says_why(lab, ctx):
    fake = lab((CAPTURES / "not_connected.xml").read_text())
    fake.answer = (lambda orig: lambda host, cmd: (
        (fake.sent.append((host, cmd)) or (fake.state, "", 102)) if cmd == hb.CRM_MON
        else orig(host, cmd)))(fake.answer)
    with pytest.raises(StateError, match="db01: crm_mon failed .code 102, Not connected.*db02"):
        hb.status_step(ctx, "db")
    assert fake.sent == [("db01", hb.CRM_MON), ("db02", hb.CRM_MON)]


def test_status_all_nodes_unreachable_names_them(lab, ctx):
    lab(DB_INITIAL, down={"db01", "db02"})
    with pytest.raises(UnreachableError, match="db01.*db02"):
        hb.status_step(ctx, "db")


# --------------------------------------------------------------------------- standby / online


def test_standby_sends_crm_standby_and_waits_for_the_move(lab, ctx):
    fake = lab(DB_INITIAL, after={"crm_standby -N db01 -v on": DB01_STANDBY})
    after = hb.standby_step(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == [("db01", "crm_standby -N db01 -v on")]
    assert hb.node_state(after, "db01") == "standby"
    assert hb.group_node(after, "grp-pgpool") == "db02"


def test_standby_task_of_a_lb_node_derives_the_cluster(lab, ctx):
    # lb02 runs grp-apache in this capture; crm_mon keeps showing it there, online
    fake = lab(LB, after={"crm_standby -N lb02 -v on": LB})
    with pytest.raises(HaError) as err:
        hb.standby_step(ctx, "lb02", timeout=0.1, yes=True)
    assert err.value.code == HaError.NOT_CONVERGED
    assert "lb02 standby, grp-apache started on lb01" in err.value.message
    assert fake.mutating() == [("lb01", "crm_standby -N lb02 -v on")]
    assert all(h.startswith("lb") for h, _ in fake.sent)


def test_standby_not_converged_names_expected_and_seen(lab, ctx):
    fake = lab(DB_INITIAL, after={"crm_standby -N db01 -v on": DB_INITIAL})
    with pytest.raises(HaError) as err:
        hb.standby_step(ctx, "db01", timeout=0.1, yes=True)
    assert err.value.code == HaError.NOT_CONVERGED
    assert "grp-pgpool started on db02" in err.value.message
    assert "db01 online" in err.value.message
    assert len(fake.mutating()) == 1


def test_standby_refused_when_the_other_node_is_offline(lab, ctx):
    fake = lab(DB01_DOWN)
    with pytest.raises(StateError, match="no other db node is online"):
        hb.standby_step(ctx, "db02", timeout=1, yes=True)
    assert fake.mutating() == []


@pytest.mark.parametrize("bad", ["db01;id", "db01 db02", "$(id)", "", "-v"])
def test_standby_rejects_metacharacters_before_anything_runs(lab, ctx, bad):
    fake = lab(DB_INITIAL)
    with pytest.raises(UsageError):
        hb.standby_step(ctx, bad, yes=True)
    assert fake.sent == []


def test_standby_unknown_node_lists_known_hosts_and_sends_nothing(lab, ctx):
    fake = lab(DB_INITIAL)
    with pytest.raises(UsageError, match="known hosts: db01, db02, lb01, lb02"):
        hb.standby_step(ctx, "db09", yes=True)
    assert fake.sent == []


def test_standby_task_exits_with_usage_code(lab, ctx, capsys):
    fake = lab(DB_INITIAL)
    with pytest.raises(invoke.Exit) as err:
        hb.standby(ctx, node="db01;id", yes=True)
    assert err.value.code == HaError.USAGE
    assert capsys.readouterr().err.count("\n") == 1
    assert fake.sent == []


def test_standby_under_dry_sends_only_probes(lab, tmp_path, capsys):
    fake = lab(DB_INITIAL, after={"crm_standby -N db01 -v on": DB01_STANDBY})
    hb.standby_step(make_ctx(tmp_path, dry=True), "db01", timeout=5, yes=True)
    assert fake.mutating() == []
    assert all(c == hb.CRM_MON for _, c in fake.sent)
    assert "crm_standby -N db01 -v on" in capsys.readouterr().out


def test_online_sends_standby_off_and_waits(lab, ctx):
    fake = lab(DB01_STANDBY, after={"crm_standby -N db01 -v off": PGPOOL_CLEAN})
    after = hb.online_step(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == [("db01", "crm_standby -N db01 -v off")]
    assert hb.node_state(after, "db01") == "online"


def test_online_waits_until_the_dc_is_idle_twice_in_a_row(lab, ctx):
    fake = lab(DB01_STANDBY, after={"crm_standby -N db01 -v off": PGPOOL_CLEAN})
    fake.dc_states = ["S_TRANSITION_ENGINE", "S_IDLE", "S_POLICY_ENGINE", "S_IDLE", "S_IDLE"]
    hb.online_step(ctx, "db01", timeout=5, yes=True)
    dc_checks = [(h, c) for h, c in fake.sent if c.startswith("crmadmin")]
    assert dc_checks == [("db01", "crmadmin -S db01")] * 5
    assert fake.dc_states == []


def test_online_of_an_offline_node_is_refused(lab, ctx):
    fake = lab(DB01_DOWN)
    with pytest.raises(StateError, match="hb.start"):
        hb.online_step(ctx, "db01", yes=True)
    assert fake.mutating() == []


# --------------------------------------------------------------------------- cleanup


def test_cleanup_sends_crm_resource_cleanup_and_waits_for_the_failure_to_go(lab, ctx):
    fake = lab(PGPOOL_KILLED, after={"crm_resource --cleanup -r pgpool -N db02": PGPOOL_CLEAN})
    after = hb.cleanup_step(ctx, "pgpool", "db02", timeout=5, yes=True)
    assert fake.mutating() == [("db01", "crm_resource --cleanup -r pgpool -N db02")]
    assert ("db01", "cibadmin --query --scope resources") in fake.sent
    assert after["failed_actions"] == []


def test_cleanup_not_converged_while_the_failure_stays(lab, ctx):
    lab(PGPOOL_KILLED, after={"crm_resource --cleanup -r pgpool -N db02": PGPOOL_KILLED})
    with pytest.raises(HaError) as err:
        hb.cleanup_step(ctx, "pgpool", "db02", timeout=0.1, yes=True)
    assert err.value.code == HaError.NOT_CONVERGED
    assert "no failed action of pgpool on db02" in err.value.message


def test_cleanup_unknown_resource_is_refused_before_acting(lab, ctx):
    fake = lab(PGPOOL_KILLED)
    with pytest.raises(UsageError, match="unknown resource 'apache'.*db-vip, grp-pgpool, pgpool"):
        hb.cleanup_step(ctx, "apache", "db02", yes=True)
    assert fake.mutating() == []


def test_cleanup_bad_resource_name_sends_nothing(lab, ctx):
    fake = lab(PGPOOL_KILLED)
    with pytest.raises(UsageError):
        hb.cleanup_step(ctx, "pgpool`id`", "db02", yes=True)
    assert fake.sent == []


def test_cleanup_under_dry_sends_no_cleanup(lab, tmp_path):
    fake = lab(PGPOOL_KILLED, after={"crm_resource --cleanup -r pgpool -N db02": PGPOOL_CLEAN})
    hb.cleanup_step(make_ctx(tmp_path, dry=True), "pgpool", "db02", yes=True)
    assert fake.mutating() == []


# --------------------------------------------------------------------------- stack start / stop


@pytest.fixture
def pgpool_module(mocker):
    """A stand-in hatasks.pgpool exposing record_newest (the real one is another module's)."""
    mod = types.ModuleType("hatasks.pgpool")
    mod.record_newest = mocker.Mock(return_value={
        "recorded": True, "newest": "db01", "evidence": {"in_sync": True}})
    mocker.patch.dict(sys.modules, {"hatasks.pgpool": mod})
    import hatasks

    mocker.patch.object(hatasks, "pgpool", mod, create=True)
    return mod


def test_stop_records_newest_then_runs_stack_stop_and_checks_from_the_peer(lab, ctx, pgpool_module):
    fake = lab(DB_INITIAL, after={STOP: DB01_DOWN})
    after = hb.stop_step(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == [("db01", STOP)]
    pgpool_module.record_newest.assert_called_once()
    assert pgpool_module.record_newest.call_args.args[1] == "db"
    # before and after: read on the peer only
    assert {h for h, c in fake.sent if c == hb.CRM_MON} == {"db02"}
    assert hb.node_state(after, "db01") == "offline"


def test_stop_refuses_when_newest_cannot_be_recorded_and_none_was(lab, ctx, pgpool_module):
    pgpool_module.record_newest.return_value = {
        "recorded": False, "error": "pgpool does not answer", "previous": None}
    fake = lab(DB_INITIAL, after={STOP: DB01_DOWN})
    with pytest.raises(StateError, match="newest-data backend.*pgpool does not answer"):
        hb.stop_step(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == []


def test_stop_goes_on_with_an_earlier_newest_record(lab, ctx, pgpool_module, capsys):
    pgpool_module.record_newest.return_value = {
        "recorded": False, "error": "pgpool does not answer",
        "previous": {"newest": "db02", "ts": "2026-11-25T17:00:00Z"}}
    fake = lab(DB_INITIAL, after={STOP: DB01_DOWN})
    hb.stop_step(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == [("db01", STOP)]
    assert "earlier record stays the reference: db02" in capsys.readouterr().err


def test_stop_forced_without_any_newest_record(lab, ctx, pgpool_module):
    pgpool_module.record_newest.side_effect = StateError("pgpool does not answer")
    fake = lab(DB_INITIAL, after={STOP: DB01_DOWN})
    hb.stop_step(ctx, "db01", timeout=5, force=True, yes=True)
    assert fake.mutating() == [("db01", STOP)]


def test_stop_refused_when_it_would_stop_the_service(lab, ctx, pgpool_module):
    fake = lab(DB01_DOWN)
    with pytest.raises(StateError, match="service would stop"):
        hb.stop_step(ctx, "db02", yes=True)
    assert fake.mutating() == []
    pgpool_module.record_newest.assert_not_called()


def test_stop_under_dry_sends_nothing_and_records_nothing(lab, tmp_path, pgpool_module, capsys):
    fake = lab(DB_INITIAL, after={STOP: DB01_DOWN})
    hb.stop_step(make_ctx(tmp_path, dry=True), "db01", yes=True)
    assert fake.mutating() == []
    pgpool_module.record_newest.assert_not_called()
    assert STOP in capsys.readouterr().out


def test_stop_on_lb_does_not_record_newest(lab, ctx, pgpool_module):
    lb01_down = LB.replace('name="lb01" id="1" online="true"', 'name="lb01" id="1" online="false"')
    fake = lab(LB, after={STOP: lb01_down})
    hb.stop_step(ctx, "lb01", timeout=5, yes=True)
    assert fake.mutating() == [("lb01", STOP)]
    pgpool_module.record_newest.assert_not_called()


def test_start_runs_stack_start_and_waits_for_online(lab, ctx):
    fake = lab(DB01_DOWN, after={START: DB_INITIAL})
    after = hb.start_step(ctx, "db01", timeout=5, yes=True)
    assert fake.mutating() == [("db01", START)]
    assert hb.node_state(after, "db01") == "online"


def test_start_of_an_online_node_does_nothing(lab, ctx):
    fake = lab(DB_INITIAL)
    hb.start_step(ctx, "db01", yes=True)
    assert fake.mutating() == []


def test_start_unreachable_host_names_it(lab, ctx):
    lab(DB01_DOWN, down={"db01"})
    with pytest.raises(UnreachableError, match="db01"):
        hb.start_step(ctx, "db01", timeout=5, yes=True)


# --------------------------------------------------------------------------- log


def test_log_greps_the_inventory_log_with_quoting(lab, ctx, capsys):
    cmd = hb.log_command("/var/log/pacemaker/pacemaker.log", 20)
    assert cmd == (
        "test -r /var/log/pacemaker/pacemaker.log && { grep -E -e "
        "'(ERROR|FATAL|CRIT)|[[:space:]](error|crit|alert|emerg):' -- "
        "/var/log/pacemaker/pacemaker.log | tail -n 20; }"
    )
    line = ("Nov 25 16:48:08.123 db02 pacemaker-controld[123] (log_executor_event) \t"
            "error: Result of monitor operation for pgpool on db02: not running")
    fake = lab(DB_INITIAL, extra={cmd: (line + "\n", "", 0)})
    hb.log(ctx, host="db02", lines=20, format="table")
    assert fake.sent == [("db02", cmd)]
    assert "Result of monitor operation for pgpool" in capsys.readouterr().out


def test_log_keeps_lines_the_parser_does_not_understand(lab, ctx):
    cmd = hb.log_command("/var/log/pacemaker/pacemaker.log", 50)
    padded = ("Nov 25 17:22:27.101 db01 pacemakerd          [67] (pcmk_child_exit) \t"
              "error: pacemaker-execd[70] exited with status 2")
    plain = ("Nov 25 16:49:57.974 db01 pacemaker-schedulerd[89] (pcmk__log_transition_summary) \t"
             "error: Calculated transition 23 (with errors)")
    lab(DB_INITIAL, extra={cmd: (padded + "\n" + plain + "\n", "", 0)})
    data = hb.log_step(ctx, "db01")
    assert [e["line"] for e in data["entries"]] == [padded, plain]
    assert data["entries"][1]["level"] == "error"


def test_log_path_with_a_space_is_quoted():
    assert "'/var/log/my logs/ha.log'" in hb.log_command("/var/log/my logs/ha.log", 5)


def test_log_unreadable_file_is_a_state_error(lab, ctx):
    cmd = hb.log_command("/var/log/pacemaker/pacemaker.log", 50)
    lab(DB_INITIAL, extra={cmd: ("", "", 1)})
    with pytest.raises(StateError, match="cannot read the cluster log"):
        hb.log_step(ctx, "db01")


def test_log_bad_lines_sends_nothing(lab, ctx):
    fake = lab(DB_INITIAL)
    with pytest.raises(UsageError):
        hb.log_step(ctx, "db01", lines="0")
    assert fake.sent == []
