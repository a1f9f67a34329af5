"""db scenarios without a cluster: input validation, refusals before any command, the recover
loop (diagnose -> one step -> diagnose again), exit codes. The cluster's state is given by
patching hb.crm_status / pgpool readers; any ssh command would fail the test."""

import pathlib

import invoke
import pytest

from hatasks import db, hb, pgpool, remote
from hatasks.errors import HaError, UsageError

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def ctx(tmp_path):
    return invoke.Context(config=invoke.Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))


@pytest.fixture(autouse=True)
def no_pgpool_record(mocker):
    mocker.patch.object(pgpool, "record_newest", return_value={"recorded": False})


@pytest.fixture(autouse=True)
def no_ssh(mocker):
    def boom(*a, **kw):
        raise AssertionError(f"unexpected remote command: {a[2] if len(a) > 2 else kw}")
    mocker.patch.object(remote, "run", side_effect=boom)


def crm_state(db01="online", db02="online", group_on="db01"):
    res = []
    for rid in ("db-vip", "pgpool"):
        res.append({"id": rid, "group": "grp-pgpool", "node": group_on,
                    "nodes": [group_on] if group_on else [],
                    "role": "Started" if group_on else "Stopped"})
    return {"cluster": "db", "read_on": "db01", "unanswered": {},
            "nodes": [{"name": "db01", "state": db01}, {"name": "db02", "state": db02}],
            "resources": res, "failed_actions": []}


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("call,msg", [
    (lambda c: db.failover_step(c, from_="db09"), "unknown host 'db09'"),
    (lambda c: db.failover_step(c, from_="lb01"), "not a host of the db cluster"),
    (lambda c: db.failover_step(c, from_="db01;reboot"), "not allowed"),
    (lambda c: db.failback_step(c, to="lb02"), "not a host of the db cluster"),
    (lambda c: db.maintenance_step(c, "db01", "nap"), "--for must be one of reboot, pg-restart"),
    (lambda c: db.maintenance_step(c, "db01", "pg-restart", pg_action="kill"), "--pg must be"),
    (lambda c: db.maintenance_step(c, "db03", "reboot"), "unknown host"),
    (lambda c: db.recover_step(c, method="rsync"), "--method must be one of"),
    (lambda c: db.recover_step(c, to="lb01"), "not a host of the db cluster"),
    (lambda c: db.failover_step(c, timeout=0), "--timeout must be greater than 0"),
])
def test_bad_input_is_refused_before_any_command(ctx, mocker, call, msg):
    crm = mocker.patch.object(hb, "crm_status", side_effect=AssertionError("read state"))
    with pytest.raises(UsageError) as exc:
        call(ctx)
    assert msg in exc.value.message
    crm.assert_not_called()


# --------------------------------------------------------------------------- refusals on state


def test_failover_refuses_when_the_other_node_is_not_online(ctx, mocker):
    mocker.patch.object(hb, "crm_status", return_value=crm_state(db02="offline"))
    standby = mocker.patch.object(hb, "standby_step")
    with pytest.raises(HaError) as exc:
        db.failover_step(ctx, yes=True)
    assert exc.value.code == HaError.STATE
    assert "no other node is online" in exc.value.message and "db02 offline" in exc.value.message
    standby.assert_not_called()


def test_failover_from_a_node_not_running_the_group(ctx, mocker):
    mocker.patch.object(hb, "crm_status", return_value=crm_state(group_on="db02"))
    with pytest.raises(HaError) as exc:
        db.failover_step(ctx, from_="db01", yes=True)
    assert "runs on db02, not on db01" in exc.value.message


def test_failback_refuses_with_a_node_offline(ctx, mocker):
    mocker.patch.object(hb, "crm_status", return_value=crm_state(db01="offline", group_on="db02"))
    standby = mocker.patch.object(hb, "standby_step")
    with pytest.raises(HaError) as exc:
        db.failback_step(ctx, to="db01", yes=True)
    assert "both nodes must be online first" in exc.value.message
    assert "db01 is OFFLINE" in exc.value.message
    standby.assert_not_called()


def test_failback_refuses_while_pgpool_is_degenerated(ctx, mocker):
    mocker.patch.object(hb, "crm_status", return_value=crm_state(group_on="db02"))
    mocker.patch.object(pgpool, "status", return_value={
        "reachable": True, "degenerated": True,
        "backends": [{"host": "db01", "status": "down"}, {"host": "db02", "status": "up"}]})
    standby = mocker.patch.object(hb, "standby_step")
    with pytest.raises(HaError) as exc:
        db.failback_step(ctx, to="db01", yes=True)
    assert "degenerated (db01 down)" in exc.value.message
    standby.assert_not_called()


def test_failback_to_where_it_runs_does_nothing(ctx, mocker, capsys):
    mocker.patch.object(hb, "crm_status", return_value=crm_state(group_on="db01"))
    standby = mocker.patch.object(hb, "standby_step")
    db.failback_step(ctx, to="db01", yes=True)
    assert "already runs on db01: nothing to fail back" in capsys.readouterr().out
    standby.assert_not_called()


def test_failover_without_terminal_or_yes_is_refused(ctx, mocker):
    mocker.patch.object(hb, "crm_status", return_value=crm_state())
    mocker.patch("sys.stdin.isatty", return_value=False)
    standby = mocker.patch.object(hb, "standby_step")
    with pytest.raises(HaError) as exc:
        db.failover_step(ctx)
    assert exc.value.code == HaError.REFUSED
    standby.assert_not_called()


def test_failover_moves_then_brings_the_node_back(ctx, mocker):
    states = iter([crm_state(), crm_state(group_on="db02")])
    mocker.patch.object(hb, "crm_status", side_effect=lambda *a, **k: next(states))
    rec = mocker.patch.object(pgpool, "record_newest",
                              return_value={"recorded": True, "newest": "db01"})
    calls = []
    mocker.patch.object(hb, "standby_step",
                        side_effect=lambda c, n, **k: calls.append(("standby", n)))
    mocker.patch.object(hb, "online_step",
                        side_effect=lambda c, n, **k: calls.append(("online", n)))
    mocker.patch.object(hb, "wait_for", return_value=crm_state(group_on="db02"))
    mocker.patch.object(pgpool, "read_pool_nodes", return_value={"backends": []})
    db.failover_step(ctx, yes=True)
    assert calls == [("standby", "db01"), ("online", "db01")]
    rec.assert_called_once()


# --------------------------------------------------------------------------- the recover loop


class Script:
    """A fake cluster: each diagnosis pops the next result; execute records the step."""

    def __init__(self, results):
        self.results = list(results)
        self.executed = []

    def diagnose(self):
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]

    def execute(self, step):
        self.executed.append(db._render(step))


def result(pattern, steps, host="db01"):
    return dict(db._result(pattern, host if pattern != "healthy" else None, ["e"], steps, None, []),
                cluster="db")


def c_db(ctx):
    return remote.inventory(ctx).cluster("db")


def test_recover_runs_one_step_per_diagnosis_until_healthy(ctx):
    start = db._step("hb.start", "w", host="db01")
    resync = db._step("sync.resync", "w", source="db02", target="db01", method="dump", force=False)
    s = Script([result("power", [start, resync]), result("degenerated", [resync]),
                result("healthy", [])])
    out = db.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert out["pattern"] == "healthy"
    assert s.executed == ["inv hb.start --host db01",
                          "inv sync.resync --source db02 --target db01 --method dump"]


def test_recover_stops_at_a_human_step_with_exit_3(ctx):
    s = Script([result("power", [db._manual("power on db01"),
                                 db._step("hb.start", "w", host="db01")])])
    with pytest.raises(HaError) as exc:
        db.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert exc.value.code == HaError.STATE
    assert exc.value.message == "needs a human: power on db01"
    assert s.executed == []


def test_recover_gives_up_when_a_step_does_not_cure(ctx):
    start = db._step("hb.start", "w", host="db01")
    s = Script([result("heartbeat", [start])])
    with pytest.raises(HaError) as exc:
        db.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert exc.value.code == HaError.NOT_CONVERGED
    assert "did not cure the heartbeat failure" in exc.value.message
    assert s.executed == ["inv hb.start --host db01"]


def test_recover_does_not_rerun_a_passed_check(ctx):
    check = db._step("pgpool.check", "w", host="db01")
    clean = db._step("hb.cleanup", "w", resource="pgpool", node="db01")
    s = Script([result("pgpool", [check, db._manual("fix", conditional=True), clean]),
                result("pgpool", [check, db._manual("fix", conditional=True), clean]),
                result("healthy", [])])
    db.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert s.executed == ["inv pgpool.check --host db01",
                          "inv hb.cleanup --resource pgpool --node db01"]


def test_recover_on_a_healthy_cluster_does_nothing(ctx, capsys):
    s = Script([result("healthy", [])])
    db.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {}, yes=True)
    assert s.executed == []
    assert "healthy: nothing to recover" in capsys.readouterr().out


def test_recover_journals_each_step(ctx):
    from hatasks import journal

    start = db._step("hb.start", "w", host="db01")
    s = Script([result("heartbeat", [start]), result("healthy", [])])
    db.run_recovery(ctx, c_db(ctx), "db.recover", s.diagnose, s.execute, {"method": "dump"},
                    yes=True)
    last = journal.last_operation(ctx, "db", "db.recover")
    assert last["outcome"] == "done"
    assert last["checkpoints"] == ["inv hb.start --host db01"]


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
        assert db.power_state(ctx, fake) == want
    fake = type("H", (), {"name": "db01", "vars": {}})()
    assert db.power_state(ctx, fake) is None


def _split_brain_step():
    return {"task": "sync.resync", "text": "copy the newest data from db02 onto db01",
            "args": {"source": "db02", "target": "db01", "method": "dump", "force": True}}


def test_split_brain_resync_waits_for_the_operators_choice(ctx, mocker):
    """pgpool's current view contradicts the recorded newest backend: no source is picked for
    the operator (either side may hold writes the other lacks); nothing is resynced."""
    from hatasks import sync

    mocker.patch.object(db, "wait_settled")
    resync = mocker.patch.object(sync, "resync")
    c = remote.inventory(ctx).cluster("db")
    with pytest.raises(db.NeedsHuman) as exc:
        db.execute_db_step(ctx, c, _split_brain_step(), 60)
    assert "split brain" in exc.value.message
    assert "--source db02" in exc.value.message and "--source db01" in exc.value.message
    assert exc.value.code == HaError.STATE
    resync.assert_not_called()


@pytest.mark.parametrize("chosen,source,target", [("db02", "db02", "db01"),
                                                  ("db01", "db01", "db02")])
def test_split_brain_resync_follows_the_chosen_source(ctx, mocker, chosen, source, target):
    from hatasks import sync

    mocker.patch.object(db, "wait_settled")
    resync = mocker.patch.object(sync, "resync")
    c = remote.inventory(ctx).cluster("db")
    db.execute_db_step(ctx, c, _split_brain_step(), 60, chosen_source=chosen)
    resync.assert_called_once_with(ctx, source=source, target=target, method="dump", force=True,
                                   yes=True)


def test_recover_source_must_be_a_db_host(ctx):
    with pytest.raises(UsageError):
        db.recover_step(ctx, source="lb01", yes=True)
