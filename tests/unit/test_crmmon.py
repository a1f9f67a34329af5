"""hatasks.crmmon on real crm_mon XML: the lab's Pacemaker 2.1.5 and crm_mon's rendering of
crm_simulate states (captures/pacemaker); the queries every caller shares (group_node...)."""

import pathlib

import pytest

from hatasks import crmmon

FIX = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
LAB = FIX / "lab-samples"
PCMK = FIX / "captures" / "pacemaker"


def read(path):
    return path.read_text(encoding="utf-8")


def states(status):
    return {n["name"]: n["state"] for n in status["nodes"]}


def xml(name, where=PCMK):
    return crmmon.parse_crm_mon_xml(read(where / name))


# --------------------------------------------------------------------------- XML, lab


def test_xml_initial_db_cluster():
    st = xml("crm_mon-1_xml_db_initial.xml", LAB)
    assert st["source"] == "xml"
    assert st["dc"] == "db01"
    assert st["quorum"] is True
    assert states(st) == {"db01": "online", "db02": "online"}
    assert [n["dc"] for n in st["nodes"]] == [True, False]
    assert [(r["id"], r["group"], r["node"], r["role"]) for r in st["resources"]] == [
        ("db-vip", "grp-pgpool", "db01", "Started"),
        ("pgpool", "grp-pgpool", "db01", "Started"),
    ]
    assert st["resources"][1]["agent"] == "ocf:lab:pgpool"
    assert st["resources"][0]["agent"] == "ocf:heartbeat:IPaddr2"
    assert all(r["managed"] and not r["failed"] for r in st["resources"])
    assert st["failed_actions"] == []
    assert st["groups"] == {"grp-pgpool": {"members": ["db-vip", "pgpool"], "node": "db01"}}
    assert crmmon.group_node(st, "grp-pgpool") == "db01"
    assert crmmon.is_healthy(st, "grp-pgpool") is True
    assert crmmon.problems(st, "grp-pgpool") == []


def test_xml_db01_standby_moves_group():
    st = xml("crm_mon-1_xml_db01_standby.xml", LAB)
    assert states(st) == {"db01": "standby", "db02": "online"}
    node = st["nodes"][0]
    assert node["online"] is True and node["standby"] is True
    assert node["resources_running"] == 0
    assert crmmon.group_node(st, "grp-pgpool") == "db02"
    assert crmmon.node_state(st, "db01") == "standby"
    assert crmmon.is_healthy(st, "grp-pgpool") is True
    assert crmmon.problems(st, "grp-pgpool") == ["node db01 is standby"]


def test_xml_lb_cluster():
    st = xml("crm_mon-1_xml_lb.xml", LAB)
    assert st["dc"] == "lb02"
    assert states(st) == {"lb01": "online", "lb02": "online"}
    assert crmmon.group_node(st, "grp-apache") == "lb02"
    assert [r["id"] for r in crmmon.group_members(st, "grp-apache")] == ["lb-vip", "apache"]


def test_xml_pgpool_killed_failure_history():
    st = xml("crm_mon-1_xml_pgpool_killed.xml", LAB)
    assert crmmon.group_node(st, "grp-pgpool") == "db02"
    assert st["failed_actions"] == [{
        "resource": "pgpool",
        "node": "db02",
        "operation": "monitor",
        "rc": 7,
        "reason": "not running",
        "exitstatus": "not running",
        "exitreason": "",
        "status": "complete",
        "interval": 10000,
        "call": 13,
        "last_rc_change": "2026-11-25 16:48:08Z",
        "op_key": "pgpool_monitor_10000",
    }]
    assert st["fail_counts"] == [{"resource": "pgpool", "node": "db02", "fail_count": 1,
                                  "last_failure": "Wed Nov 25 16:48:08 2026"}]
    # the group runs, but the failure is still on record: not healthy until cleaned up
    assert crmmon.is_healthy(st, "grp-pgpool") is False
    assert len(crmmon.failed_for(st, "grp-pgpool")) == 1
    assert len(crmmon.failed_for(st, "pgpool", node="db02")) == 1
    assert crmmon.failed_for(st, "pgpool", node="db01") == []
    assert crmmon.failed_for(st, "db-vip") == []
    assert crmmon.failed_for(st, node="DB02")[0]["rc"] == 7
    assert crmmon.problems(st, "grp-pgpool") == [
        "failed action: pgpool monitor on db02 (rc=7): not running"]


# --------------------------------------------------------------------------- XML, simulated states


def test_xml_node_down_group_on_db02():
    st = xml("db01_down.xml")
    assert states(st) == {"db01": "offline", "db02": "online"}
    assert st["nodes"][0]["online"] is False and st["nodes"][0]["unclean"] is False
    assert crmmon.group_node(st, "grp-pgpool") == "db02"
    assert crmmon.is_healthy(st, "grp-pgpool") is True


def test_xml_unclean_node_still_holds_the_group():
    st = xml("db01_unclean.xml")
    db01 = st["nodes"][0]
    assert db01["state"] == "offline"
    assert db01["unclean"] is True and db01["online"] is False
    # Pacemaker still places the resources on the unclean node until it is fenced
    assert crmmon.group_node(st, "grp-pgpool") == "db01"
    assert crmmon.is_healthy(st, "grp-pgpool") is False
    assert "node db01 is UNCLEAN" in crmmon.problems(st, "grp-pgpool")


def test_xml_stopped_resources_have_no_node():
    st = xml("both_standby_stopped.xml")
    assert states(st) == {"db01": "standby", "db02": "standby"}
    assert [(r["id"], r["node"], r["role"], r["nodes"]) for r in st["resources"]] == [
        ("db-vip", None, "Stopped", []), ("pgpool", None, "Stopped", [])]
    assert crmmon.group_node(st, "grp-pgpool") is None
    assert st["groups"]["grp-pgpool"]["node"] is None
    assert crmmon.is_healthy(st, "grp-pgpool") is False
    assert "group grp-pgpool is not running on one node (db-vip Stopped, pgpool Stopped)" \
        in crmmon.problems(st, "grp-pgpool")


def test_xml_standby_with_active_resources():
    st = xml("db01_standby_with_resources.xml")
    assert states(st) == {"db01": "standby", "db02": "online"}
    assert crmmon.group_node(st, "grp-pgpool") == "db01"
    # the group sits on a standby node: about to move, not healthy
    assert crmmon.is_healthy(st, "grp-pgpool") is False


def test_xml_unmanaged_resource():
    st = xml("pgpool_unmanaged.xml")
    assert [(r["id"], r["managed"]) for r in st["resources"]] == [("db-vip", True),
                                                                  ("pgpool", False)]
    assert crmmon.group_node(st, "grp-pgpool") == "db01"
    assert crmmon.is_healthy(st, "grp-pgpool") is False
    assert "resource pgpool is unmanaged" in crmmon.problems(st)


def test_xml_maintenance_node_keeps_online_state():
    st = xml("db01_maintenance_db02_offline.xml")
    assert states(st) == {"db01": "online", "db02": "offline"}
    assert st["nodes"][0]["maintenance"] is True
    assert all(not r["managed"] for r in st["resources"])
    assert "node db01 is in maintenance" in crmmon.problems(st)


def test_xml_monitor_failed_resource_flagged():
    st = xml("monitor_failed_not_recovered.xml")
    pg = [r for r in st["resources"] if r["id"] == "pgpool"][0]
    assert pg["failed"] is True and pg["role"] == "Started" and pg["node"] == "db01"
    fa = st["failed_actions"][0]
    assert (fa["resource"], fa["operation"], fa["node"], fa["rc"], fa["interval"]) == \
        ("pgpool", "monitor", "db01", 7, 10000)
    assert fa["reason"] == "not running (Simulated action result)"
    assert crmmon.is_healthy(st, "grp-pgpool") is False
    assert "resource pgpool FAILED on db01" in crmmon.problems(st, "grp-pgpool")


def test_xml_start_failure_like_2008_resource_pg_start_0():
    st = xml("start_failed_moved_to_db02.xml")
    assert crmmon.group_node(st, "grp-pgpool") == "db02"
    fa = crmmon.failed_for(st, "pgpool", node="db01")
    assert len(fa) == 1
    assert (fa[0]["operation"], fa[0]["rc"], fa[0]["interval"]) == ("start", 1, 0)
    assert fa[0]["reason"] == "error (User-injected result)"
    assert st["fail_counts"][0]["fail_count"] == 1000000  # INFINITY


def test_xml_timed_out_start_reason_names_the_status():
    st = xml("start_timed_out.xml")
    fa = st["failed_actions"][0]
    assert fa["status"] == "Timed Out"
    assert fa["rc"] == 1
    assert fa["reason"] == "Timed Out: pgpool did not listen on 9999 within 60s"


def test_xml_simulated_initial_matches_lab():
    sim, lab = xml("initial.xml"), xml("crm_mon-1_xml_db_initial.xml", LAB)
    assert states(sim) == states(lab)
    assert sim["groups"] == lab["groups"]


# --------------------------------------------------------------------------- XML errors


def test_xml_not_connected_is_a_clear_error():
    with pytest.raises(ValueError, match=r"crm_mon failed \(code 102, Not connected\).*"
                                         r"Connection to cluster failed"):
        xml("not_connected.xml")


@pytest.mark.parametrize("bad, message", [
    ("", "empty"),
    ("   \n", "empty"),
    ("crm_mon: command not found", "not XML"),
    ("<pacemaker-result><nodes>", "malformed"),
    ("<cib/>", "root <cib>"),
    ("<crm_mon version='2.0.5'/>", "legacy --as-xml"),
    ("<pacemaker-result api-version='2.25'><status code='0'/></pacemaker-result>",
     "no <nodes>"),
    ("<pacemaker-result><nodes><node online='true'/></nodes></pacemaker-result>",
     "without a name"),
])
def test_xml_malformed(bad, message):
    with pytest.raises(ValueError, match=message):
        crmmon.parse_crm_mon_xml(bad)


def test_xml_cib_is_not_crm_mon_output():
    with pytest.raises(ValueError, match="expected <pacemaker-result>"):
        xml("cib-base.xml")


def test_xml_pending_node_and_no_dc():
    doc = read(LAB / "crm_mon-1_xml_db_initial.xml")
    doc = doc.replace('present="true" version', 'present="false" version')
    doc = doc.replace('name="db02" id="2" online="true" standby="false" standby_onfail="false" '
                      'maintenance="false" pending="false"',
                      'name="db02" id="2" online="true" standby="false" standby_onfail="false" '
                      'maintenance="false" pending="true"')
    st = crmmon.parse_crm_mon_xml(doc)
    assert st["nodes"][1]["pending"] is True
    assert st["nodes"][1]["state"] == "offline"
    # no DC announced in the summary: fall back to the node flagged is_dc
    assert st["dc"] == "db01"


def test_xml_bytes_and_leading_noise_accepted():
    raw = read(LAB / "crm_mon-1_xml_db_initial.xml")
    st = crmmon.parse_crm_mon_xml(("warning: something\n" + raw).encode())
    assert crmmon.group_node(st, "grp-pgpool") == "db01"


def test_split_op_key():
    assert crmmon.split_op_key("resource_pg_start_0") == ("resource_pg", "start", 0)
    assert crmmon.split_op_key("pgpool_monitor_10000") == ("pgpool", "monitor", 10000)
    assert crmmon.split_op_key("db_vip_migrate_to_0") == ("db_vip", "migrate_to", 0)
    assert crmmon.split_op_key("weird") == ("weird", None, None)


def test_clone_instances_one_per_node():
    st = xml("with_clone.xml")
    pings = [r for r in st["resources"] if r["id"] == "ping"]
    assert [(r["node"], r["role"], r["group"]) for r in pings] == [
        ("db01", "Started", None), ("db02", "Started", None)]
    assert crmmon.group_node(st, "grp-pgpool") == "db01"
    assert crmmon.is_healthy(st, "grp-pgpool") is True


# --------------------------------------------------------------------------- one group_node


def test_group_node_waits_for_a_member_still_starting():
    """A move is done only when every member is started: Starting is not there yet."""
    st = xml("initial.xml")
    assert crmmon.group_node(st, "grp-pgpool") == "db01"
    for res in st["resources"]:
        if res["id"] == "pgpool":
            res["role"] = "Starting"
    assert crmmon.group_node(st, "grp-pgpool") is None
    assert [r["id"] for r in crmmon.running_on(st, "db01")] == ["db-vip", "pgpool"]


def test_group_node_of_a_lone_resource_named_as_the_group():
    """A cluster whose "group" var names a single primitive (no <group> around it)."""
    st = xml("initial.xml")
    for res in st["resources"]:
        res["group"] = None
    assert crmmon.group_node(st, "pgpool") == "db01"
    assert [r["id"] for r in crmmon.group_members(st, "pgpool")] == ["pgpool"]
    assert crmmon.group_node(st, "grp-pgpool") is None


def test_node_names_in_another_case():
    st = xml("initial.xml")
    assert crmmon.node_state(st, "DB01") == "online"
    assert crmmon.others_online(st, "DB01") == ["db02"]
    assert crmmon.group_node(st, "grp-pgpool") == "db01"


def test_group_node_on_the_lab_captures():
    assert crmmon.group_node(xml("crm_mon-1_xml_db01_standby.xml", LAB), "grp-pgpool") == "db02"
    assert crmmon.group_node(xml("crm_mon-1_xml_lb.xml", LAB), "grp-apache") == "lb02"
    assert crmmon.group_node(xml("db01_down.xml"), "grp-pgpool") == "db02"
