"""The scenario engine without a cluster: the recover loop (diagnose -> one step -> diagnose
again), the step tables of db and lb, reading a node's crm_mon and power, the diagnose output.
Any ssh command not faked by a test fails it."""

import json
import pathlib

import invoke
import pytest

from hatasks import db, engine, journal, lb, remote, rules
from hatasks.errors import HaError, StateError

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACEMAKER = ROOT / "tests" / "fixtures" / "captures" / "pacemaker"
LAB = ROOT / "tests" / "fixtures" / "lab-samples"
DIAGNOSE = ROOT / "tests" / "fixtures" / "diagnose"


@pytest.fixture
def ctx(tmp_path):
    return invoke.Context(config=invoke.Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))


@pytest.fixture(autouse=True)
def no_ssh(mocker):
    def boom(*a, **kw):
        raise AssertionError(f"unexpected remote command: {a[2] if len(a) > 2 else kw}")
    return mocker.patch.object(remote, "run", side_effect=boom)


# --------------------------------------------------------------------------- the recover loop


class Script:
    """A fake cluster: each diagnosis pops the next result; execute records the step."""

    def __init__(self, results):
        self.results = list(results)
        self.executed = []

    def diagnose(self):
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]

    def execute(self, step):
        self.executed.append((step["task"], step["args"]))


def result(pattern, steps, host="db01"):
    return dict(rules.result(pattern, host if pattern != "healthy" else None, ["e"], steps, None,
                             []), cluster="db")


def c_db(ctx):
    return remote.inventory(ctx).cluster("db")


def test_recover_runs_one_step_per_diagnosis_until_healthy(ctx):
    start = rules.step("hb.start", "w", host="db01")
    resync = rules.step("sync.resync", "w", source="db02", target="db01", method="dump",
                        force=False)
    s = Script([result("power", [start, resync]), result("degenerated", [resync]),
                result("healthy", [])])
    out = engine.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert out["pattern"] == "healthy"
    assert s.executed == [("hb.start", {"host": "db01"}),
                          ("sync.resync", {"source": "db02", "target": "db01", "method": "dump",
                                           "force": False})]


def test_recover_stops_at_a_human_step_with_exit_3(ctx):
    s = Script([result("power", [rules.manual("power on db01"),
                                 rules.step("hb.start", "w", host="db01")])])
    with pytest.raises(engine.NeedsHuman) as exc:
        engine.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert exc.value.code == HaError.STATE
    assert exc.value.message == "needs a human: power on db01"
    assert s.executed == []


def test_recover_gives_up_when_a_step_does_not_cure(ctx):
    start = rules.step("hb.start", "w", host="db01")
    s = Script([result("heartbeat", [start])])
    with pytest.raises(HaError) as exc:
        engine.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert exc.value.code == HaError.NOT_CONVERGED
    assert rules.render(start) in exc.value.message and "heartbeat" in exc.value.message
    assert s.executed == [("hb.start", {"host": "db01"})]


def test_recover_does_not_rerun_a_passed_check(ctx):
    check = rules.step("pgpool.check", "w", host="db01")
    clean = rules.step("hb.cleanup", "w", resource="pgpool", node="db01")
    s = Script([result("pgpool", [check, rules.manual("fix", conditional=True), clean]),
                result("pgpool", [check, rules.manual("fix", conditional=True), clean]),
                result("healthy", [])])
    engine.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert s.executed == [("pgpool.check", {"host": "db01"}),
                          ("hb.cleanup", {"resource": "pgpool", "node": "db01"})]


def test_recover_on_a_healthy_cluster_does_nothing(ctx, capsys):
    s = Script([result("healthy", [])])
    engine.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert s.executed == []
    assert "healthy: nothing to recover" in capsys.readouterr().out
    assert journal.last_operation(ctx, "db", "db.recover") is None


def test_recover_journals_each_step(ctx):
    start = rules.step("hb.start", "w", host="db01")
    s = Script([result("heartbeat", [start]), result("healthy", [])])
    engine.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {"method": "dump"},
                        yes=True)
    last = journal.last_operation(ctx, "db", "db.recover")
    assert last["outcome"] == "done"
    assert last["checkpoints"] == [rules.render(start)]


def test_a_transient_interconnect_cut_is_given_time_to_heal(ctx, mocker):
    mocker.patch.object(engine.time, "sleep")
    cut = rules.manual("restore the cluster interconnect")
    cut["settle"] = 30
    s = Script([result("network", [cut]), result("healthy", [])])
    out = engine.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert out["pattern"] == "healthy" and s.executed == []


# --------------------------------------------------------------------------- the step tables


def _planned_tasks(table_kind):
    """Every task name the rules plan from the facts captured on the lab."""
    seen = set()
    for f in sorted(DIAGNOSE.glob(f"{table_kind}_*.json")):
        facts = json.loads(f.read_text())["facts"]
        diagnose = rules.diagnose_db if table_kind == "db" else rules.diagnose_lb
        for d in (diagnose(facts), diagnose(dict(facts, failback_to=facts["order"][0]))):
            seen |= {s["task"] for s in d["steps"] if s["task"] != "manual"}
    return seen


@pytest.mark.parametrize("kind,table", [("db", db.STEPS), ("lb", lb.STEPS)])
def test_every_planned_step_has_a_function(kind, table):
    planned = _planned_tasks(kind)
    assert planned, "the captures plan nothing"
    assert planned <= set(table)


def test_an_unknown_step_is_refused(ctx):
    with pytest.raises(StateError):
        engine.execute(engine.Run(ctx, c_db(ctx), 60), rules.step("db.reboot", "w"), db.STEPS)


def test_execute_passes_the_step_args(ctx):
    seen = []
    table = {"hb.start": lambda run, args: seen.append((run.timeout, args))}
    engine.execute(engine.Run(ctx, c_db(ctx), 42), rules.step("hb.start", "w", host="db01"),
                   table)
    assert seen == [(42, {"host": "db01"})]


# --------------------------------------------------------------------------- facts


def test_crm_error_prefers_the_xml_error_lines():
    xml = (PACEMAKER / "not_connected.xml").read_text()
    assert engine.crm_error(xml, "", 102) == \
        "crm_mon: Connection to cluster failed: Connection refused"
    assert engine.crm_error('<status code="102" message="Not connected"/>', "", 102) == \
        "Not connected (code 102)"
    assert engine.crm_error("", "sh: crm_mon: not found\n", 127) == "sh: crm_mon: not found"
    assert engine.crm_error("", "", 1) == "crm_mon exited 1"


def _answer(stdout, exited=0):
    return invoke.Result(stdout=stdout, stderr="", exited=exited)


def test_probe_crm_of_a_stopped_stack_gives_its_reason(ctx, no_ssh):
    no_ssh.side_effect = lambda *a, **k: _answer((PACEMAKER / "not_connected.xml").read_text(),
                                                 102)
    view, error = engine.probe_crm(ctx, "db01", "grp-pgpool")
    assert view is None
    assert "Connection refused" in error


def test_probe_crm_of_a_running_node_gives_its_view(ctx, no_ssh):
    no_ssh.side_effect = lambda *a, **k: _answer(
        (LAB / "crm_mon-1_xml_db01_standby.xml").read_text())
    view, error = engine.probe_crm(ctx, "db02", "grp-pgpool")
    assert error is None
    assert view["nodes"] == {"db01": "standby", "db02": "online"}
    assert view["group_node"] == "db02"


def test_power_state_runs_the_inventory_command(ctx, tmp_path):
    script = tmp_path / "pc"
    script.write_text("#!/bin/sh\n[ \"$1\" = db01 ] && exit 0\n"
                      "[ \"$1\" = db02 ] && exit 1\nexit 2\n")
    script.chmod(0o755)
    inv = remote.inventory(ctx)
    for name, want in (("db01", "on"), ("db02", "off"), ("lb01", None)):
        h = inv.host(name)
        h_vars = dict(h.vars, power_check=f"{script} {{host}}")
        fake = type("H", (), {"name": name, "vars": h_vars})()
        assert engine.power_state(ctx, fake) == want
    fake = type("H", (), {"name": "db01", "vars": {}})()
    assert engine.power_state(ctx, fake) is None


# --------------------------------------------------------------------------- diagnose output


def _captured(name):
    data = json.loads((DIAGNOSE / f"{name}.json").read_text())
    return dict(rules.diagnose_db(data["facts"]), cluster="db", facts=data["facts"])


def test_show_diagnosis_of_a_failure_exits_3_naming_the_recover_task(capsys):
    d = _captured("db_power_db02")
    with pytest.raises(StateError) as exc:
        engine.show_diagnosis(d, "json", False, "db.recover")
    assert exc.value.code == HaError.STATE
    assert "db02" in exc.value.message and "inv db.recover" in exc.value.message
    shown = json.loads(capsys.readouterr().out)
    assert (shown["pattern"], shown["host"]) == ("power", "db02")
    assert "steps" not in shown and "facts" not in shown
    assert shown["plan"] == d["plan"]


def test_show_diagnosis_of_a_healthy_cluster_with_facts(capsys):
    d = _captured("db_healthy")
    assert engine.show_diagnosis(d, "json", True, "db.recover") is d
    shown = json.loads(capsys.readouterr().out)
    assert shown["pattern"] == "healthy" and shown["facts"]["order"] == ["db01", "db02"]


def test_early_lock_gives_back_only_a_hold_it_took(ctx, monkeypatch):
    """EarlyLock takes the lock in a thread; release() waits for that take and releases it
    once, and releases nothing when the take failed (the operation's own acquire reports
    why) or under --dry (no take at all)."""
    calls = []
    refuse = {"now": False}

    def acquire(ctx, cluster, action):
        calls.append(("acquire", cluster, action))
        if refuse["now"]:
            raise HaError("locked by someone else", HaError.LOCKED)

    monkeypatch.setattr(journal, "acquire", acquire)
    monkeypatch.setattr(journal, "release", lambda ctx, cluster: calls.append(("release", cluster)))
    lock = engine.EarlyLock(ctx, "db", "db.failover")
    lock.release()
    lock.release()
    assert calls == [("acquire", "db", "db.failover"), ("release", "db")]
    calls.clear()
    refuse["now"] = True
    engine.EarlyLock(ctx, "db", "db.failover").release()
    assert calls == [("acquire", "db", "db.failover")]
    calls.clear()
    ctx.config.run.dry = True
    engine.EarlyLock(ctx, "db", "db.failover").release()
    assert calls == []


def test_in_background_gives_the_result_or_raises_the_error_where_awaited():
    assert engine.in_background(lambda a, b: a + b, 2, 3)() == 5

    def fail():
        raise StateError("no answer")

    waiting = engine.in_background(fail)
    with pytest.raises(StateError, match="no answer"):
        waiting()
