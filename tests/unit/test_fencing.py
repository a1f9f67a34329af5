"""Fencing in the model (issue 10): hb.status/status show it, db.diagnose names a fenced node.

Facts and outputs captured on lab instance 3 with `lab.up --fencing on` (tests/fixtures/fencing,
see its README); the unfenced crm_mon is the lab's usual capture. The network is the shared
FakeRemote.
"""

import json

from hatasks import crm, crmmon, db, hb, inventory, states, status

from conftest import FIXTURES, ROOT, psql_rows

FEN = FIXTURES / "fencing"
SAMPLES = FIXTURES / "lab-samples"
FENCED_HEALTHY = (FEN / "crm_mon_db_fenced_healthy.xml").read_text()
DB02_FENCED = (FEN / "crm_mon_db02_fenced.xml").read_text()
UNFENCED = (SAMPLES / "crm_mon-1_xml_db_initial.xml").read_text()
HISTORY = (FEN / "stonith_admin_history_all_db02.xml").read_text()
DIAGNOSED = json.loads((FEN / "db_diagnose_fenced_db02_history.json").read_text())


def test_view_of_a_fenced_cluster_names_its_devices_and_no_risk():
    view = hb.fencing_view(crmmon.parse_crm_mon_xml(FENCED_HEALTHY), "db")
    assert view["enabled"] is True and view["risk"] is None
    assert [(d["id"], d["role"], d["node"]) for d in view["devices"]] == [
        ("fence-db01", "Started", "db02"), ("fence-db02", "Started", "db01")]


def test_view_of_an_unfenced_db_cluster_names_the_split_brain_risk_lb_does_not():
    state = crmmon.parse_crm_mon_xml(UNFENCED)
    assert hb.fencing_view(state, "db")["risk"] == hb.UNFENCED_RISK
    assert "two pgpools: split brain" in hb.UNFENCED_RISK
    assert hb.fencing_view(state, "lb")["risk"] is None
    # enabled but no device: no fencing either
    state = dict(crmmon.parse_crm_mon_xml(FENCED_HEALTHY))
    state["resources"] = [r for r in state["resources"] if not r["agent"].startswith("stonith:")]
    assert hb.fencing_view(state, "db")["risk"] == hb.UNFENCED_RISK


def test_lines_show_devices_the_last_events_and_the_risk():
    events = hb.parse_fence_history(HISTORY)
    lines = hb.fencing_lines(hb.fencing_view(crmmon.parse_crm_mon_xml(DB02_FENCED), "db",
                                             events))
    assert lines[0] == "   fencing enabled; devices: fence-db01 Stopped, fence-db02 Started on db01"
    assert lines[1] == "   fenced: db02 (off) by db01 at 2026-11-30 21:40:45Z: success"
    lines = hb.fencing_lines(hb.fencing_view(crmmon.parse_crm_mon_xml(UNFENCED), "db"))
    assert lines == ["   fencing DISABLED; devices: none", "   !! " + hb.UNFENCED_RISK]
    assert hb.fencing_lines(None) == []


def test_status_with_fencing_reads_the_history_only_where_fencing_is_on(ctx, fake):
    fake.on(crm.CRM_MON, (0, DB02_FENCED))
    fake.on("stonith_admin --history '*'", (0, HISTORY))
    state = hb.crm_status_with_fencing(ctx, "db")
    assert state["fencing"]["events"][0]["target"] == "db02"
    assert state["fencing"]["risk"] is None
    assert "stonith_admin --history '*' --verbose --output-as=xml" in fake.commands
    fake.calls.clear()
    fake.on(crm.CRM_MON, (0, UNFENCED))
    state = hb.crm_status_with_fencing(ctx, "db")
    assert state["fencing"]["risk"] == hb.UNFENCED_RISK
    assert not [c for c in fake.commands if c.startswith("stonith_admin")]


def lab_answers(fake, db_crm_mon):
    lb = (SAMPLES / "crm_mon-1_xml_lb.xml").read_text()
    fake.on(lambda host, cmd: cmd == crm.CRM_MON,
            lambda host, cmd: (0, lb if host.startswith("lb") else db_crm_mon))
    fake.on("stonith_admin --history '*'", (0, HISTORY))
    fake.sql("SHOW pool_nodes", psql_rows((SAMPLES / "show_pool_nodes.txt").read_text()))
    fake.sql("current_setting('server_version')", [("15.18 (Debian 15.18-0+deb12u1)", 150018,
                                                    5432)])
    fake.sql("pg_database_size", [("GYOM_DB", 7700000), ("postgres", 7500000)])
    fake.on("cibadmin --query --scope constraints", (0, "<constraints/>"))


def test_status_warns_of_an_unfenced_db_cluster_and_stays_healthy(ctx, fake, capsys):
    lab_answers(fake, UNFENCED)
    status.status(ctx, format="json")
    data = json.loads(capsys.readouterr().out)
    assert data["healthy"] is True and data["problems"] == []
    assert data["warnings"] == ["db: " + hb.UNFENCED_RISK]
    assert data["clusters"]["db"]["hb"]["fencing"]["enabled"] is False
    status.status(ctx, format="table")
    out = capsys.readouterr().out
    assert "fencing DISABLED; devices: none" in out
    assert out.rstrip().endswith("healthy\n  warning: db: " + hb.UNFENCED_RISK)


def test_status_of_a_fenced_cluster_shows_devices_and_events_no_warning(ctx, fake, capsys):
    lab_answers(fake, FENCED_HEALTHY)
    status.status(ctx, format="json")
    data = json.loads(capsys.readouterr().out)
    assert data["healthy"] is True and data["warnings"] == []
    fen = data["clusters"]["db"]["hb"]["fencing"]
    assert [d["id"] for d in fen["devices"]] == ["fence-db01", "fence-db02"]
    assert fen["events"][0]["delegate"] == "db01"


# --------------------------------------------------------------------------- db.diagnose


def test_diagnose_names_a_fenced_node_who_and_when_and_plans_power_on_then_recovery():
    d = states.diagnose_db(DIAGNOSED["facts"])
    assert (d["pattern"], d["host"], d["source"]) == ("fenced", "db02", "db01")
    assert ("fencing history: db02 fenced (off) by db01 at 2026-11-30 21:40:45Z, asked by db01 "
            "(stonith_admin.744)") in d["evidence"]
    tasks = [s["task"] for s in d["steps"]]
    assert tasks == ["manual", "hb.start", "pg.start", "sync.resync"]
    assert "power db02 on through its fence device fence-db02's BMC" in d["steps"][0]["text"]
    assert d["steps"][3]["args"]["source"] == "db01" and d["steps"][3]["args"]["target"] == "db02"


def test_without_a_fencing_event_the_same_facts_are_power():
    facts = dict(DIAGNOSED["facts"], fencing=None)
    assert states.diagnose_db(facts)["pattern"] == "power"
    # the last event for db02 failed: not fenced
    failed = [dict(e, status="failed") for e in DIAGNOSED["facts"]["fencing"]["events"]]
    facts = dict(DIAGNOSED["facts"], fencing={"events": failed, "devices": {}})
    assert states.diagnose_db(facts)["pattern"] == "power"


def test_a_fenced_node_powered_on_again_but_unreachable_is_network():
    facts = json.loads(json.dumps(DIAGNOSED["facts"]))
    facts["hosts"]["db02"]["power"] = "on"
    assert states.diagnose_db(facts)["pattern"] == "network"


def test_fenced_is_a_resync_pattern_recorded_for_recover():
    from hatasks import rules
    assert "fenced" in rules.RESYNC_PATTERNS and "fenced" in states.DB_ORDER
    assert states.DB_ORDER.index("fenced") < states.DB_ORDER.index("power")


def testfencing_facts_are_read_only_when_a_host_does_not_answer(ctx, fake):
    c = inventory.load(str(ROOT / "hosts.ini")).cluster("db")
    up = {"ssh": True, "crm": {"nodes": {}}}
    assert db.fencing_facts(ctx, c, {"db01": up, "db02": dict(up)}) is None
    assert fake.commands == []
    fake.on("stonith_admin --history '*'", (0, HISTORY))
    fake.on("stonith_admin --list db02", (0, "fence-db02\n1 fence device found\n"))
    got = db.fencing_facts(ctx, c, {"db01": up, "db02": {"ssh": False, "crm": None}})
    assert got["devices"] == {"db02": ["fence-db02"]}
    assert got["events"][0]["target"] == "db02"
    assert {c.host for c in fake.calls} == {"db01"}


def test_every_event_is_read_and_the_newest_shown_last():
    """--verbose: without it Pacemaker 2.1.5 printed only one (the older) event of a node
    fenced twice, and hb.fence saw no new event."""
    assert "--verbose" in hb.FENCE_HISTORY_ALL
    events = hb.parse_fence_history((FEN / "stonith_admin_history_verbose_two.xml").read_text())
    view = hb.fencing_view(crmmon.parse_crm_mon_xml(DB02_FENCED), "db", events)
    assert [e["client"] for e in view["events"]] == ["stonith_admin.612", "stonith_admin.1489"]
    facts = dict(DIAGNOSED["facts"], fencing={"events": events, "devices": {}})
    d = states.diagnose_db(facts)
    assert [e for e in d["evidence"] if "at 2026-11-30 21:47:08Z" in e and "stonith_admin.1489" in e]


def test_hb_status_does_not_call_a_fence_device_kept_off_its_own_node_a_ban():
    """Each fence device has a -INFINITY location on the node it fences (a node never fences
    itself): that is the set-up, not an operator's ban. Any other ban is still shown."""
    view = {"read_on": "db01", "dc": "db01", "unanswered": {}, "quorum": True,
            "stonith_enabled": True,
            "fencing": {"enabled": True, "devices": [{"id": "fence-db02", "role": "Started",
                                                      "node": "db01"}], "events": []},
            "bans": [{"id": "loc-fence-db02", "resource": "fence-db02", "node": "db02"},
                     {"id": "cli-ban-pgpool-on-db01", "resource": "pgpool", "node": "db01"}]}
    text = hb.status_table({"clusters": ["db"], "views": {"db": view}, "nodes": [],
                            "resources": [], "failed_actions": []})
    assert "loc-fence-db02" not in text
    assert "!! ban cli-ban-pgpool-on-db01: pgpool kept off db01" in text
