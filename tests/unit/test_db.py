"""db scenarios without a cluster: input validation, refusals before any command, the recover
loop (diagnose -> one step -> diagnose again), exit codes. The cluster's state is given by
patching crm.crm_status / the backends readers; any ssh command would fail the test."""

import pathlib

import invoke
import pytest

from hatasks import backends, crm, crmmon, db, engine, hb, newest, remote
from hatasks.errors import HaError, UsageError

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def ctx(tmp_path):
    return invoke.Context(config=invoke.Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))


@pytest.fixture(autouse=True)
def no_pgpool_record(mocker):
    mocker.patch.object(newest, "record_newest", return_value={"recorded": False})


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
    (lambda c: db.failover(c, from_="db09"), "unknown host 'db09'"),
    (lambda c: db.failover(c, from_="lb01"), "not a host of the db cluster"),
    (lambda c: db.failover(c, from_="db01;reboot"), "not allowed"),
    (lambda c: db.failback(c, to="lb02"), "not a host of the db cluster"),
    (lambda c: db.maintenance(c, "db01", "nap"), "--for must be one of reboot, pg-restart"),
    (lambda c: db.maintenance(c, "db01", "pg-restart", pg_action="kill"), "--pg must be"),
    (lambda c: db.maintenance(c, "db03", "reboot"), "unknown host"),
    (lambda c: db.recover(c, method="rsync"), "--method must be one of"),
    (lambda c: db.recover(c, to="lb01"), "not a host of the db cluster"),
    (lambda c: db.failover(c, timeout=0), "--timeout must be greater than 0"),
])
def test_bad_input_is_refused_before_any_command(ctx, mocker, call, msg):
    read = mocker.patch.object(crm, "crm_status", side_effect=AssertionError("read state"))
    with pytest.raises(UsageError) as exc:
        call(ctx)
    assert msg in exc.value.message
    read.assert_not_called()


# --------------------------------------------------------------------------- refusals on state


def test_failover_refuses_when_the_other_node_is_not_online(ctx, mocker):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(db02="offline"))
    standby = mocker.patch.object(hb, "standby")
    with pytest.raises(HaError) as exc:
        db.failover(ctx, yes=True)
    assert exc.value.code == HaError.STATE
    assert "no other node is online" in exc.value.message and "db02 offline" in exc.value.message
    standby.assert_not_called()


def test_failover_from_a_node_not_running_the_group(ctx, mocker):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(group_on="db02"))
    with pytest.raises(HaError) as exc:
        db.failover(ctx, from_="db01", yes=True)
    assert "runs on db02, not on db01" in exc.value.message


def test_failback_refuses_with_a_node_offline(ctx, mocker):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(db01="offline", group_on="db02"))
    standby = mocker.patch.object(hb, "standby")
    with pytest.raises(HaError) as exc:
        db.failback(ctx, to="db01", yes=True)
    assert "both nodes must be online first" in exc.value.message
    assert "db01 is OFFLINE" in exc.value.message
    standby.assert_not_called()


def test_failback_refuses_while_pgpool_is_degenerated(ctx, mocker):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(group_on="db02"))
    mocker.patch.object(db.backends, "read_pool_nodes", return_value={
        "degenerated": True,
        "backends": [{"node_id": 0, "host": "db01", "status": "down"},
                     {"node_id": 1, "host": "db02", "status": "up"}]})
    standby = mocker.patch.object(hb, "standby")
    with pytest.raises(HaError) as exc:
        db.failback(ctx, to="db01", yes=True)
    assert "degenerated (db01 down)" in exc.value.message
    standby.assert_not_called()


def test_failover_refuses_while_pgpool_is_degenerated_unless_forced(ctx, mocker, capsys):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(group_on="db01"))
    mocker.patch.object(db.backends, "read_pool_nodes", return_value={
        "degenerated": True,
        "backends": [{"node_id": 0, "host": "db01", "status": "up"},
                     {"node_id": 1, "host": "db02", "status": "down"}]})
    mocker.patch.object(db, "_record_async", return_value=lambda: None)
    move = mocker.patch.object(db, "move_group", return_value=(None, None))
    with pytest.raises(HaError) as exc:
        db.failover(ctx, yes=True)
    assert exc.value.code == HaError.STATE and "degenerated (db02 down)" in exc.value.message
    move.assert_not_called()
    db.failover(ctx, yes=True, force=True)
    move.assert_called_once()
    assert "pgpool before: 0:db01 up, 1:db02 down; degenerated: yes" in capsys.readouterr().out


def test_failback_to_where_it_runs_does_nothing(ctx, mocker, capsys):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(group_on="db01"))
    standby = mocker.patch.object(hb, "standby")
    db.failback(ctx, to="db01", yes=True)
    assert "already runs on db01: nothing to fail back" in capsys.readouterr().out
    standby.assert_not_called()


def test_failover_without_terminal_or_yes_is_refused(ctx, mocker):
    mocker.patch.object(crm, "crm_status", return_value=crm_state())
    mocker.patch("sys.stdin.isatty", return_value=False)
    standby = mocker.patch.object(hb, "standby")
    with pytest.raises(HaError) as exc:
        db.failover(ctx)
    assert exc.value.code == HaError.REFUSED
    standby.assert_not_called()


# crm_mon as the lab printed it: both online with the group on db01, then db01 in standby with the
# group moved to db02; "db01 back online" is that capture with db01's standby attribute off
# (what `crm_standby -N db01 -v off` changes)
LAB = ROOT / "tests" / "fixtures" / "lab-samples"
INITIAL = (LAB / "crm_mon-1_xml_db_initial.xml").read_text()
DB01_STANDBY = (LAB / "crm_mon-1_xml_db01_standby.xml").read_text()
DB01_BACK = DB01_STANDBY.replace('name="db01" id="1" online="true" standby="true"',
                                 'name="db01" id="1" online="true" standby="false"')


class CrmMon:
    """ssh answering crm_mon with the next capture (the last one again once used up)."""

    def __init__(self, captures):
        self.captures = list(captures)
        self.reads = 0

    def __call__(self, ctx, host, command, **kw):
        assert command == crm.CRM_MON, command
        self.reads += 1
        out = self.captures.pop(0) if len(self.captures) > 1 else self.captures[0]
        return invoke.Result(stdout=out, stderr="", exited=0)


def _failover_with(mocker, captures):
    assert DB01_BACK != DB01_STANDBY
    mon = CrmMon(captures)
    remote.run.side_effect = mon
    calls = []
    mocker.patch.object(hb, "standby",
                        side_effect=lambda c, n, **k: calls.append(("standby", n)))
    # hb.online returns the state it read last (the real crm_mon parser on the capture)
    mocker.patch.object(hb, "online", side_effect=lambda c, n, **k: (
        calls.append(("online", n)), crm.crm_status(c, "db"))[1])
    mocker.patch.object(backends, "read_pool_nodes", return_value={"backends": []})
    return mon, calls


def test_failover_moves_then_brings_the_node_back(ctx, mocker):
    rec = mocker.patch.object(newest, "record_newest",
                              return_value={"recorded": True, "newest": "db01"})
    # before; the state read again under the lock (given to hb.standby, which does not read
    # it again); after hb.online (db01 still in standby: not moved yet); polled once more
    mon, calls = _failover_with(mocker, [INITIAL, DB01_STANDBY, DB01_STANDBY, DB01_BACK])
    standby = hb.standby
    after = db.failover(ctx, yes=True)
    assert calls == [("standby", "db01"), ("online", "db01")]
    assert standby.call_args.kwargs["state"]["read_on"] == "db01"
    rec.assert_called_once()
    assert crmmon.group_node(after, "grp-pgpool") == "db02"
    assert (crmmon.node_state(after, "db01"), crmmon.node_state(after, "db02")) == ("online", "online")
    assert mon.reads == 4


@pytest.mark.parametrize("stuck", [DB01_STANDBY, INITIAL], ids=["db01-stays-standby",
                                                                 "group-back-on-db01"])
def test_failover_not_converged_until_moved_and_both_online(ctx, mocker, stuck):
    _failover_with(mocker, [INITIAL, stuck])
    with pytest.raises(HaError) as exc:
        db.failover(ctx, timeout=0.3, yes=True)
    assert exc.value.code == HaError.NOT_CONVERGED
    assert "grp-pgpool" in exc.value.message and "db02" in exc.value.message


# --------------------------------------------------------------------------- plan steps


def _split_brain_step():
    return {"task": "sync.resync", "text": "copy the newest data from db02 onto db01",
            "args": {"source": "db02", "target": "db01", "method": "dump", "force": True}}


def test_split_brain_resync_waits_for_the_operators_choice(ctx, mocker):
    """pgpool's current view contradicts the recorded newest backend: no source is picked for
    the operator (either side may hold writes the other lacks); nothing is resynced."""
    from hatasks import sync

    mocker.patch.object(engine, "wait_settled")
    resync = mocker.patch.object(sync, "resync")
    c = remote.inventory(ctx).cluster("db")
    with pytest.raises(engine.NeedsHuman) as exc:
        engine.execute(engine.Run(ctx, c, 60), _split_brain_step(), db.STEPS)
    assert "split brain" in exc.value.message
    assert "--source db02" in exc.value.message and "--source db01" in exc.value.message
    assert exc.value.code == HaError.STATE
    resync.assert_not_called()


@pytest.mark.parametrize("chosen,source,target", [("db02", "db02", "db01"),
                                                  ("db01", "db01", "db02")])
def test_split_brain_resync_follows_the_chosen_source(ctx, mocker, chosen, source, target):
    from hatasks import sync

    mocker.patch.object(engine, "wait_settled")
    resync = mocker.patch.object(sync, "resync")
    c = remote.inventory(ctx).cluster("db")
    engine.execute(engine.Run(ctx, c, 60, source=chosen), _split_brain_step(), db.STEPS)
    resync.assert_called_once_with(ctx, source=source, target=target, method="dump", force=True,
                                   yes=True, chosen=True)


def test_recover_source_must_be_a_db_host(ctx):
    with pytest.raises(UsageError):
        db.recover(ctx, source="lb01", yes=True)

