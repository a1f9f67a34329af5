"""The pure diagnosis: facts -> failure pattern, evidence and recovery plan (tables 5-2, 5-4).

Facts captured on the real lab (tests/fixtures/diagnose/*.json, `inv db.diagnose --format json
--facts` while a `lab.fault` lasted) plus facts built here for the cases a capture cannot pin
(a pgpool start failure, a split brain seen after the merge, a standby node, the journal).
"""

import copy
import json
import pathlib

import pytest

from hatasks import rules

FIX = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "diagnose"


def captured(name):
    data = json.loads((FIX / f"{name}.json").read_text())
    return data["facts"], data


# --------------------------------------------------------------------------- builders


def view(nodes, group_node="db01", failed=(), group="grp-pgpool"):
    return {"nodes": dict(nodes), "group_node": group_node,
            "resources": [{"id": "db-vip", "node": group_node, "role": "Started",
                           "nodes": [group_node] if group_node else []}],
            "failed_actions": [dict(f) for f in failed]}


def host(crm=None, ssh=True, power=None, pg_running=True, connect=True, crm_error=None,
         ssh_error=None):
    return {"ssh": ssh, "ssh_error": ssh_error, "power": power, "crm": crm,
            "crm_error": crm_error,
            "pg": {"running": pg_running, "port": 5432 if pg_running else None,
                   "connect": connect} if ssh else None}


def pool(db01="up", db02="up", reachable=True, newest=None):
    backends = [{"node_id": 0, "host": "db01", "port": 5432, "status": db01, "role": "main"},
                {"node_id": 1, "host": "db02", "port": 5432, "status": db02, "role": "replica"}]
    degenerated = "down" in (db01, db02)
    if degenerated and newest is None:
        newest = "db01" if db01 == "up" else "db02"
    return {"reachable": reachable, "error": None if reachable else "pgpool does not answer",
            "backends": backends if reachable else [],
            "degenerated": degenerated if reachable else None,
            "newest": newest if reachable else None, "via": "db01"}


def db_facts(**over):
    both = {"db01": "online", "db02": "online"}
    facts = {"cluster": "db", "kind": "db", "order": ["db01", "db02"], "group": "grp-pgpool",
             "pgpool_resource": "pgpool",
             "hosts": {"db01": host(view(both)), "db02": host(view(both))},
             "pgpool": pool(), "failback_to": None, "method": "dump",
             "pending": None, "first_degenerated": None}
    facts.update(over)
    return facts


def pgpool_failed_on_db01(operation, rc, reason, group_node):
    """db_facts where both nodes are online, the group runs on ``group_node`` and both see
    pgpool's failed ``operation`` (``rc``, ``reason``) on db01."""
    failed = [{"resource": "pgpool", "node": "db01", "operation": operation, "rc": rc,
               "reason": reason}]
    facts = db_facts()
    for h in ("db01", "db02"):
        facts["hosts"][h]["crm"] = view({"db01": "online", "db02": "online"}, group_node, failed)
    return facts


def tasks_of(result):
    return [s["task"] for s in result["steps"] if not s.get("conditional")]


# --------------------------------------------------------------------------- captured on the lab


def test_captured_healthy_db():
    facts, shown = captured("db_healthy")
    d = rules.diagnose_db(facts)
    assert d["pattern"] == "healthy" == shown["pattern"]
    assert d["plan"] == []


def test_captured_power_failure_of_db02():
    facts, shown = captured("db_power_db02")
    assert facts["hosts"]["db02"]["ssh"] is False and facts["hosts"]["db02"]["power"] == "off"
    d = rules.diagnose_db(facts)
    assert (d["pattern"], d["host"]) == ("power", "db02")
    assert shown["pattern"] == "power"
    assert d["steps"][0]["task"] == "manual" and "power on db02" in d["steps"][0]["text"]
    resync = [s for s in d["steps"] if s["task"] == "sync.resync"]
    assert resync
    assert (resync[0]["args"]["source"], resync[0]["args"]["target"]) == ("db01", "db02")
    assert any("powered OFF" in e for e in d["evidence"])


def test_captured_network_failure_of_db01():
    facts, shown = captured("db_network_db01")
    assert facts["hosts"]["db01"]["ssh"] is False and facts["hosts"]["db01"]["power"] == "on"
    d = rules.diagnose_db(facts)
    assert (d["pattern"], d["host"]) == ("network", "db01")
    assert "cables" in d["steps"][0]["text"]
    resync = [s for s in d["steps"] if s["task"] == "sync.resync"][0]
    assert (resync["args"]["source"], resync["args"]["target"]) == ("db02", "db01")
    assert any("powered on, so the network" in e for e in d["evidence"])


def test_captured_postgres_failure_of_db02():
    facts, _ = captured("db_postgres_db02")
    d = rules.diagnose_db(facts)
    assert (d["pattern"], d["host"]) == ("postgres", "db02")
    assert tasks_of(d)[:2] == ["pg.start", "sync.resync"]
    assert d["steps"][0]["args"] == {"host": "db02"}


@pytest.mark.parametrize("name,pattern,host", [
    ("lb_power_lb01", "power", "lb01"),
    ("lb_network_lb01", "network", "lb01"),
    ("lb_heartbeat_lb01", "heartbeat", "lb01"),
    ("lb_httpd_lb01", "httpd", "lb01"),
    ("lb_healthy", "healthy", None),
])
def test_captured_lb(name, pattern, host):
    facts, shown = captured(name)
    d = rules.diagnose_lb(facts)
    assert (d["pattern"], d["host"]) == (pattern, host)
    assert shown["pattern"] == pattern


def test_captured_lb_httpd_plan_checks_then_cleans_up():
    facts, _ = captured("lb_httpd_lb01")
    d = rules.diagnose_lb(facts)
    assert tasks_of(d)[:2] == ["web.check", "hb.cleanup"]
    cleanup = [s for s in d["steps"] if s["task"] == "hb.cleanup"][0]
    assert cleanup["args"] == {"resource": "apache", "node": "lb01"}
    check = [s["task"] for s in d["steps"]].index("web.check")
    fix = d["steps"][check + 1]
    assert (fix["task"], fix.get("conditional")) == ("manual", True)
    assert "web.check" in fix["text"] and "lb01" in fix["text"]


# --------------------------------------------------------------------------- built facts: DB


def test_power_without_power_check_is_reported_as_network_with_a_warning():
    facts = db_facts()
    facts["hosts"]["db02"] = host(ssh=False, ssh_error="timed out", power=None)
    facts["hosts"]["db01"]["crm"]["nodes"]["db02"] = "offline"
    d = rules.diagnose_db(facts)
    assert d["pattern"] == "network"
    assert any("no power_check" in e for e in d["evidence"])
    assert any("db01 sees db02 OFFLINE" in e for e in d["evidence"])


def test_heartbeat_down_plans_a_stack_start_and_no_resync():
    facts = db_facts()
    facts["hosts"]["db01"] = host(None, crm_error="Not connected (code 102)")
    facts["hosts"]["db02"]["crm"] = view({"db01": "offline", "db02": "online"}, "db02")
    d = rules.diagnose_db(facts)
    assert (d["pattern"], d["host"]) == ("heartbeat", "db01")
    assert tasks_of(d) == ["hb.start"]
    assert (d["steps"][0]["task"], d["steps"][0]["args"]) == ("hb.start", {"host": "db01"})
    assert "sync.resync" not in [s["task"] for s in d["steps"]]


def test_pgpool_start_failure_plans_check_manual_fix_cleanup():
    d = rules.diagnose_db(pgpool_failed_on_db01("start", 1, "error", "db02"))
    assert (d["pattern"], d["host"]) == ("pgpool", "db01")
    assert [s["task"] for s in d["steps"]][:3] == ["pgpool.check", "manual", "hb.cleanup"]
    assert d["steps"][1].get("conditional") is True
    assert d["steps"][2]["args"] == {"resource": "pgpool", "node": "db01"}
    last = d["steps"][-1]
    assert (last["task"], last["args"], last.get("conditional")) == \
        ("db.failback", {"to": "db01"}, True)
    assert d["plan"] == [rules.render(s) for s in d["steps"]]


def test_pgpool_restarted_in_place_plans_only_the_cleanup():
    """chaos seed 31 step 2 (fencing on): pgpool killed on db01, Pacemaker restarted it there
    and it answered; the plan still began with pgpool.check --host db01, which refuses next
    to a live pgpool: db.recover exit 7 three times, a hand repair cleaned the failure up."""
    facts = pgpool_failed_on_db01("monitor", 7, "not running", "db01")
    d = rules.diagnose_db(facts)
    assert (d["pattern"], d["host"]) == ("pgpool", "db01")
    assert tasks_of(d) == ["hb.cleanup"]
    assert d["steps"][0]["args"] == {"resource": "pgpool", "node": "db01"}
    # not answering yet: the configuration is still the suspect
    facts["pgpool"] = pool(reachable=False)
    assert tasks_of(rules.diagnose_db(facts))[0] == "pgpool.check"


def test_degenerated_names_the_down_backend_and_the_newest_source():
    facts = db_facts(pgpool=pool(db01="up", db02="down"))
    d = rules.diagnose_db(facts)
    assert (d["pattern"], d["host"]) == ("degenerated", "db02")
    step = [s for s in d["steps"] if s["task"] == "sync.resync"][0]
    assert step["args"] == {"source": "db01", "target": "db02", "method": "dump", "force": False}
    assert d["steps"][0] is step and d["plan"][0] == rules.render(step)


def test_split_brain_trusts_the_first_record_and_forces():
    # after a partition healed, pgpool restarted on db01 with a stale status file: it says db02
    # is down, but while the partition lasted pgpool on db02 took the writes and it was recorded
    facts = db_facts(pgpool=pool(db01="up", db02="down"),
                     first_degenerated={"newest": "db02", "ts": "2026-11-25T17:23:39Z",
                                        "evidence": {"pool_nodes": "db01 down; db02 up"}})
    d = rules.diagnose_db(facts)
    step = [s for s in d["steps"] if s["task"] == "sync.resync"][0]
    assert (step["args"]["source"], step["args"]["target"], step["args"]["force"]) == \
        ("db02", "db01", True)
    assert d["host"] == "db01"
    assert any(e.startswith("CONTRADICTION") for e in d["evidence"])
    assert d["steps"][0] is step and d["plan"][0] == rules.render(step)


def test_pending_resync_keeps_the_cluster_from_being_called_healthy():
    facts = db_facts(pending={"pattern": "network", "host": "db01", "source": "db02",
                              "ts": "2026-11-25T17:23:39Z"})
    d = rules.diagnose_db(facts)
    assert d["pattern"] == "network"
    step = [s for s in d["steps"] if s["task"] == "sync.resync"][0]
    assert (step["args"]["source"], step["args"]["target"]) == ("db02", "db01")


def test_postgres_refusing_connections_counts_as_postgres_failure():
    facts = db_facts()
    facts["hosts"]["db02"] = host(view({"db01": "online", "db02": "online"}), connect=False)
    d = rules.diagnose_db(facts)
    assert (d["pattern"], d["host"]) == ("postgres", "db02")
    assert any("refuses a direct connection" in e for e in d["evidence"])


def test_power_outranks_the_degenerated_pgpool_it_causes():
    facts = db_facts(pgpool=pool(db01="up", db02="down"))
    facts["hosts"]["db02"] = host(ssh=False, ssh_error="No route to host", power="off")
    d = rules.diagnose_db(facts)
    assert d["pattern"] == "power"
    assert [p[0] for p in d["problems"]] == ["power", "degenerated"]


def test_interconnect_cut_with_both_nodes_answering_is_network():
    facts = db_facts()
    facts["hosts"]["db01"]["crm"] = view({"db01": "online", "db02": "offline"}, "db01")
    facts["hosts"]["db02"]["crm"] = view({"db01": "offline", "db02": "online"}, "db02")
    d = rules.diagnose_db(facts)
    assert d["pattern"] == "network"
    assert any("split brain" in e for e in d["evidence"])
    assert "interconnect" in d["steps"][0]["text"]


def test_failback_requested_on_a_healthy_cluster_is_a_step():
    both = {"db01": "online", "db02": "online"}
    facts = db_facts(failback_to="db01")
    for h in ("db01", "db02"):
        facts["hosts"][h]["crm"] = view(both, "db02")
    d = rules.diagnose_db(facts)
    assert d["pattern"] == "healthy"
    assert [(s["task"], s["args"], s.get("conditional")) for s in d["steps"]] == \
        [("db.failback", {"to": "db01"}, None)]


def test_diagnosis_does_not_change_its_input():
    facts = db_facts(pgpool=pool(db01="up", db02="down"))
    before = copy.deepcopy(facts)
    rules.diagnose_db(facts)
    assert facts == before


# --------------------------------------------------------------------------- journal facts


def rec(event, **kw):
    base = {"cluster": "db", "event": event, "action": kw.pop("action", None),
            "ts": kw.pop("ts", "t")}
    base.update(kw)
    return base


def test_journal_first_degenerated_since_last_in_sync():
    records = [
        rec("newest", newest="db01", evidence={"in_sync": True}),
        rec("newest", newest="db02", evidence={"degenerated": True}, ts="t1"),
        rec("newest", newest="db01", evidence={"degenerated": True}, ts="t2"),
    ]
    jf = rules.journal_facts(records, "db")
    assert jf["first_degenerated"]["newest"] == "db02"
    assert jf["first_degenerated"]["ts"] == "t1"


def test_journal_pending_cleared_by_resync_or_recover():
    diag = rec("diagnosis", pattern="power", host="db02", source="db01", action="db.diagnose")
    assert rules.journal_facts([diag], "db")["pending"]["source"] == "db01"
    resynced = [diag, rec("done", action="sync.resync", parent="x")]
    assert rules.journal_facts(resynced, "db")["pending"] is None
    assert rules.journal_facts([diag, rec("done", action="db.recover")], "db")["pending"] is None
    assert rules.journal_facts([diag, rec("done", action="pgpool.recover")], "db")["pending"] is None
    # both backends proven equal after the diagnosis (sync.verify, a resync finding nothing to
    # do): settled; an equality proven before the failure settles nothing
    equal = rec("equal", action="equal", backends=["db01", "db02"])
    assert rules.journal_facts([diag, equal], "db")["pending"] is None
    assert rules.journal_facts([equal, diag], "db")["pending"]["host"] == "db02"
    # a heartbeat diagnosis needs no resync: never pending
    hbd = rec("diagnosis", pattern="heartbeat", host="db02", action="db.diagnose")
    assert rules.journal_facts([hbd], "db")["pending"] is None
    # another cluster's records are ignored
    assert rules.journal_facts([dict(diag, cluster="db2")], "db")["pending"] is None


def test_journal_a_new_incident_after_a_resync_starts_afresh():
    # incident 1: db02 kept the writes; resynced. incident 2: db01 keeps them: db01 is the source
    records = [rec("newest", newest="db02", evidence={"degenerated": True}, ts="t1"),
               rec("done", action="sync.resync"),
               rec("newest", newest="db01", evidence={"degenerated": True}, ts="t3")]
    assert rules.journal_facts(records, "db")["first_degenerated"]["newest"] == "db01"
    facts = db_facts(pgpool=pool(db01="up", db02="down"),
                     **rules.journal_facts(records, "db"))
    step = [s for s in rules.diagnose_db(facts)["steps"] if s["task"] == "sync.resync"][0]
    assert (step["args"]["source"], step["args"]["target"]) == ("db01", "db02")
