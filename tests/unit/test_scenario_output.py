"""What a scenario prints and journals for the operator at 3 a.m., without a cluster: labelled
steps with the time since the scenario began, the before/after table with pgpool's backends,
a refused mutating task journaled with its reason (once), `history` showing it; and the
settle wait asking the DC while crm_mon is read."""

import json
import pathlib
import re

import invoke
import pytest

from hatasks import base, core_tasks, crm, crmmon, db, engine, hb, journal
from hatasks.errors import HaError

from test_db import DB01_BACK, INITIAL, crm_state
from test_hb import DB_INITIAL

ROOT = pathlib.Path(__file__).resolve().parents[2]

POOL_UP = {"degenerated": False,
           "backends": [{"node_id": 0, "host": "db01", "status": "up", "role": "main"},
                        {"node_id": 1, "host": "db02", "status": "up", "role": "replica"}]}
POOL_DEGENERATED = {"degenerated": True,
                    "backends": [{"node_id": 0, "host": "db01", "status": "up", "role": "main"},
                                 {"node_id": 1, "host": "db02", "status": "down",
                                  "role": "replica"}]}


# --------------------------------------------------------------------------- steps and table


def test_steps_are_numbered_and_carry_the_time_since_the_scenario_began(capsys):
    steps = engine.Steps(2)
    steps("standby db01: grp-pgpool moves to db02")
    sub = steps.sub(3)
    sub("record the newest-data backend")
    steps("db01 online again")
    steps.done("grp-pgpool now runs on db02")
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\[1/2 \+\d+\.\d\ds\] standby db01: grp-pgpool moves to db02", lines[0])
    assert re.fullmatch(r"\[1\.1/3 \+\d+\.\d\ds\] record the newest-data backend", lines[1])
    assert lines[2].startswith("[2/2 +") and lines[3].startswith("[done +")


def _rows(text):
    """The table's rows as {label: (before, after, mark)} (columns split on 2+ spaces)."""
    out = {}
    for line in text.splitlines()[2:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 3:
            out[cells[0]] = tuple(cells[1:])
    return out


def test_before_after_table_shows_nodes_group_and_pgpool_backends_with_changes_marked():
    before = crmmon.parse_crm_mon_xml(INITIAL)
    after = crmmon.parse_crm_mon_xml(DB01_BACK)
    rows = _rows(engine.before_after(before, after, POOL_UP, POOL_DEGENERATED, pools=True))
    assert rows["node db01"] == ("online", "online")
    assert rows["grp-pgpool on"] == ("db01", "db02", "changed")
    assert rows["pgpool backend 0 (db01)"] == ("up main", "up main")
    assert rows["pgpool backend 1 (db02)"] == ("up replica", "down replica", "changed")
    assert rows["pgpool degenerated"] == ("no", "yes", "changed")


def test_before_after_table_without_pgpool_and_with_an_unknown_after_view():
    rows = _rows(engine.before_after(crm_state(), None))
    assert rows["node db01"] == ("online", "?", "changed")
    assert not any(k.startswith("pgpool") for k in rows)


def test_failover_prints_steps_and_the_table_once_moved(ctx, mocker, capsys):
    back = crmmon.parse_crm_mon_xml(DB01_BACK) | {"cluster": "db", "read_on": "db01"}
    mocker.patch.object(crm, "crm_status", return_value=crmmon.parse_crm_mon_xml(INITIAL)
                        | {"cluster": "db", "read_on": "db01"})
    mocker.patch.object(db, "_record_async", return_value=lambda: {"recorded": True,
                                                                    "newest": "db01"})
    mocker.patch.object(db.backends, "read_pool_nodes", return_value=POOL_UP)
    mocker.patch.object(db.pgpool, "write_status_file", return_value=False)
    mocker.patch.object(engine, "warm_connections")
    standby = mocker.patch.object(hb, "standby", return_value=None)
    online = mocker.patch.object(hb, "online", return_value=back)
    db.failover(ctx, yes=True)
    out = capsys.readouterr().out
    assert standby.call_count == 1 and online.call_args.kwargs["state"] is None
    labels = re.findall(r"^\[(\d)/4 \+\d+\.\d\ds\] (.*)$", out, re.M)
    assert [n for n, _ in labels] == ["1", "2", "3", "4"]
    assert "standby db01: grp-pgpool moves to db02" in labels[1][1]
    assert "--- after (before -> after)" in out and "pgpool backend 1 (db02)" in out
    assert re.search(r"^\[done \+\d+\.\d\ds\] grp-pgpool now runs on db02", out, re.M)


# --------------------------------------------------------------------------- refusals journaled


def _refused(ctx):
    return [r for r in journal.Journal(ctx).records() if r.get("event") == "refused"]


def test_a_refused_failover_is_journaled_with_its_reason_and_cluster(ctx, mocker):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(db02="offline"))
    mocker.patch.object(db, "_record_async", return_value=lambda: None)
    mocker.patch.object(engine, "warm_connections")
    with pytest.raises(invoke.Exit) as exc:
        db.failover_task.body(ctx, yes=True)
    assert exc.value.code == HaError.STATE
    (rec,) = _refused(ctx)
    assert (rec["cluster"], rec["action"]) == ("db", "db.failover")
    assert "no other node is online" in rec["message"]
    assert rec["args"] == {"timeout": 60}
    # history shows it as key=value words, with the reason
    headers, rows = core_tasks._table(journal.history(ctx))
    assert rows[-1][4] == "refused" and "no other node is online" in rows[-1][5]


def test_a_refusal_the_operation_journaled_is_not_journaled_twice(ctx, mocker):
    mocker.patch.object(crm, "crm_status", return_value=crm_state())
    mocker.patch.object(db, "_record_async", return_value=lambda: None)
    mocker.patch.object(db.backends, "read_pool_nodes", return_value=POOL_UP)
    mocker.patch.object(engine, "warm_connections")
    mocker.patch("sys.stdin.isatty", return_value=False)
    with pytest.raises(invoke.Exit) as exc:
        db.failover_task.body(ctx)
    assert exc.value.code == HaError.REFUSED
    (rec,) = _refused(ctx)
    assert rec["message"] == "no terminal to confirm and no --yes"


def test_a_read_only_task_exiting_3_journals_nothing(ctx, mocker):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(db01="offline"))
    with pytest.raises(invoke.Exit):
        hb.status_task.body(ctx, cluster="db", format="json")
    assert _refused(ctx) == []


def test_refusal_cluster_from_the_host_option_else_the_only_cluster_of_the_kind(ctx):
    assert base.refusal_cluster(ctx, "hb", {"node": "lb02"}) == "lb"
    assert base.refusal_cluster(ctx, "db", {}) == "db"
    assert base.refusal_cluster(ctx, "db", {"cluster": "other"}) == "other"
    assert base.refusal_cluster(ctx, "core_tasks", {}) is None


# --------------------------------------------------------------------------- hb and crm


def test_standby_refusal_says_the_other_node_is_in_maintenance(ctx, fake, monkeypatch):
    state = DB_INITIAL.replace('name="db02" id="2" online="true" standby="false" '
                               'standby_onfail="false" maintenance="false"',
                               'name="db02" id="2" online="true" standby="false" '
                               'standby_onfail="false" maintenance="true"')
    assert state != DB_INITIAL
    fake.on(crm.CRM_MON, (0, state))
    with pytest.raises(HaError) as exc:
        hb.standby(ctx, "db01", yes=True)
    assert "db02 is online but in maintenance" in exc.value.message
    assert "no other" not in exc.value.message


def test_settle_asks_the_dc_named_by_the_state_seen_while_crm_mon_is_read(ctx, fake, monkeypatch):
    monkeypatch.setattr(crm, "POLL_INTERVAL", 0.01)
    fake.on(crm.CRM_MON, (0, DB_INITIAL))
    fake.on("crmadmin -S ", (0, "Controller on db01 in state S_IDLE: ok\n"))
    seen = crm.crm_status(ctx, "db")
    n = len(fake.calls)
    crm.wait_for(ctx, "db", lambda s: True, 5, "anything", settle=True, seen=seen)
    sent = [c.command for c in fake.calls[n:]]
    # two polls, each one crm_mon and one crmadmin (asked at the same time): no poll without
    assert sorted(sent) == sorted([crm.CRM_MON, f"crmadmin -S {seen['dc']}"] * 2)


def test_dc_idle_reads_stdout_and_passes_its_timeout(ctx, fake):
    fake.on("crmadmin -S ", (0, "", "S_IDLE on stderr does not count"))
    state = {"dc": "db01", "read_on": "db01"}
    assert crm.dc_idle(ctx, state, timeout=30) is False
    assert fake.calls[-1].options.get("timeout") == 30


def test_history_folds_and_shows_key_values(ctx):
    j = journal.Journal(ctx)
    for _ in range(3):
        j.write("newest", "db", "db.diagnose", {}, newest="db01", evidence={"why": "degenerated"})
    j.write("refused", "db", "db.failover", {"timeout": 60}, message="refusing to fail over")
    headers, rows = core_tasks._table(journal.history(ctx))
    assert len(rows) == 2
    assert "newest=db01" in rows[0][5] and "recorded again 2 times" in rows[0][5]
    assert "{" not in rows[0][5] and rows[1][5] == "refusing to fail over"
    assert json.loads(json.dumps(rows))  # plain strings only


def test_recovery_table_from_the_first_and_last_diagnosis():
    def diag(pattern, db01, group_on, pool):
        crm_view = {"nodes": {"db01": db01, "db02": "online"}, "group_node": group_on}
        return {"pattern": pattern, "facts": {
            "group": "grp-pgpool", "pgpool": pool,
            "hosts": {"db01": {"crm": None}, "db02": {"crm": crm_view}}}}

    first = diag("heartbeat", "offline", "db02", dict(POOL_DEGENERATED, reachable=True))
    last = diag("healthy", "online", "db02", dict(POOL_UP, reachable=True))
    rows = _rows(engine.recovery_table(first, last))
    assert rows["pattern"] == ("heartbeat", "healthy", "changed")
    assert rows["node db01"] == ("offline", "online", "changed")
    assert rows["grp-pgpool on"] == ("db02", "db02")
    assert rows["pgpool backend 1 (db02)"] == ("down replica", "up replica", "changed")
    assert rows["pgpool answers"] == ("yes", "yes")
