"""hatasks.cluster on real crm_mon outputs: the lab's Pacemaker 2.1.5, crm_mon rendering of
crm_simulate states (captures/pacemaker), and the 2008 manual's Heartbeat 2.1 screens."""

import pathlib

import pytest

from hatasks import cluster

FIX = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
LAB = FIX / "lab-samples"
PCMK = FIX / "captures" / "pacemaker"
RUNBOOK = FIX / "runbook"


def read(path):
    return path.read_text(encoding="utf-8")


def states(status):
    return {n["name"]: n["state"] for n in status["nodes"]}


def xml(name, where=PCMK):
    return cluster.parse_crm_mon_xml(read(where / name))


def text(name, where=PCMK):
    return cluster.parse_crm_mon_text(read(where / name))


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
    assert cluster.group_node(st, "grp-pgpool") == "db01"
    assert cluster.is_healthy(st, "grp-pgpool") is True
    assert cluster.problems(st, "grp-pgpool") == []


def test_xml_db01_standby_moves_group():
    st = xml("crm_mon-1_xml_db01_standby.xml", LAB)
    assert states(st) == {"db01": "standby", "db02": "online"}
    node = st["nodes"][0]
    assert node["online"] is True and node["standby"] is True
    assert node["resources_running"] == 0
    assert cluster.group_node(st, "grp-pgpool") == "db02"
    assert cluster.node_state(st, "db01") == "standby"
    assert cluster.is_healthy(st, "grp-pgpool") is True
    assert cluster.problems(st, "grp-pgpool") == ["node db01 is standby"]


def test_xml_lb_cluster():
    st = xml("crm_mon-1_xml_lb.xml", LAB)
    assert st["dc"] == "lb02"
    assert states(st) == {"lb01": "online", "lb02": "online"}
    assert cluster.group_node(st, "grp-apache") == "lb02"
    assert [r["id"] for r in cluster.group_members(st, "grp-apache")] == ["lb-vip", "apache"]


def test_xml_pgpool_killed_failure_history():
    st = xml("crm_mon-1_xml_pgpool_killed.xml", LAB)
    assert cluster.group_node(st, "grp-pgpool") == "db02"
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
    assert cluster.is_healthy(st, "grp-pgpool") is False
    assert len(cluster.failed_for(st, "grp-pgpool")) == 1
    assert len(cluster.failed_for(st, "pgpool", node="db02")) == 1
    assert cluster.failed_for(st, "pgpool", node="db01") == []
    assert cluster.failed_for(st, "db-vip") == []
    assert cluster.failed_for(st, node="DB02")[0]["rc"] == 7
    assert cluster.problems(st, "grp-pgpool") == [
        "failed action: pgpool monitor on db02 (rc=7): not running"]


# --------------------------------------------------------------------------- XML, simulated states


def test_xml_node_down_group_on_db02():
    st = xml("db01_down.xml")
    assert states(st) == {"db01": "offline", "db02": "online"}
    assert st["nodes"][0]["online"] is False and st["nodes"][0]["unclean"] is False
    assert cluster.group_node(st, "grp-pgpool") == "db02"
    assert cluster.is_healthy(st, "grp-pgpool") is True


def test_xml_unclean_node_still_holds_the_group():
    st = xml("db01_unclean.xml")
    db01 = st["nodes"][0]
    assert db01["state"] == "offline"
    assert db01["unclean"] is True and db01["online"] is False
    # Pacemaker still places the resources on the unclean node until it is fenced
    assert cluster.group_node(st, "grp-pgpool") == "db01"
    assert cluster.is_healthy(st, "grp-pgpool") is False
    assert "node db01 is UNCLEAN" in cluster.problems(st, "grp-pgpool")


def test_xml_stopped_resources_have_no_node():
    st = xml("both_standby_stopped.xml")
    assert states(st) == {"db01": "standby", "db02": "standby"}
    assert [(r["id"], r["node"], r["role"], r["nodes"]) for r in st["resources"]] == [
        ("db-vip", None, "Stopped", []), ("pgpool", None, "Stopped", [])]
    assert cluster.group_node(st, "grp-pgpool") is None
    assert st["groups"]["grp-pgpool"]["node"] is None
    assert cluster.is_healthy(st, "grp-pgpool") is False
    assert "group grp-pgpool is not running on one node (db-vip Stopped, pgpool Stopped)" \
        in cluster.problems(st, "grp-pgpool")


def test_xml_standby_with_active_resources():
    st = xml("db01_standby_with_resources.xml")
    assert states(st) == {"db01": "standby", "db02": "online"}
    assert cluster.group_node(st, "grp-pgpool") == "db01"
    # the group sits on a standby node: about to move, not healthy
    assert cluster.is_healthy(st, "grp-pgpool") is False


def test_xml_unmanaged_resource():
    st = xml("pgpool_unmanaged.xml")
    assert [(r["id"], r["managed"]) for r in st["resources"]] == [("db-vip", True),
                                                                  ("pgpool", False)]
    assert cluster.group_node(st, "grp-pgpool") == "db01"
    assert cluster.is_healthy(st, "grp-pgpool") is False
    assert "resource pgpool is unmanaged" in cluster.problems(st)


def test_xml_maintenance_node_keeps_online_state():
    st = xml("db01_maintenance_db02_offline.xml")
    assert states(st) == {"db01": "online", "db02": "offline"}
    assert st["nodes"][0]["maintenance"] is True
    assert all(not r["managed"] for r in st["resources"])
    assert "node db01 is in maintenance" in cluster.problems(st)


def test_xml_monitor_failed_resource_flagged():
    st = xml("monitor_failed_not_recovered.xml")
    pg = [r for r in st["resources"] if r["id"] == "pgpool"][0]
    assert pg["failed"] is True and pg["role"] == "Started" and pg["node"] == "db01"
    fa = st["failed_actions"][0]
    assert (fa["resource"], fa["operation"], fa["node"], fa["rc"], fa["interval"]) == \
        ("pgpool", "monitor", "db01", 7, 10000)
    assert fa["reason"] == "not running (Simulated action result)"
    assert cluster.is_healthy(st, "grp-pgpool") is False
    assert "resource pgpool FAILED on db01" in cluster.problems(st, "grp-pgpool")


def test_xml_start_failure_like_2008_resource_pg_start_0():
    st = xml("start_failed_moved_to_db02.xml")
    assert cluster.group_node(st, "grp-pgpool") == "db02"
    fa = cluster.failed_for(st, "pgpool", node="db01")
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
        cluster.parse_crm_mon_xml(bad)


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
    st = cluster.parse_crm_mon_xml(doc)
    assert st["nodes"][1]["pending"] is True
    assert st["nodes"][1]["state"] == "offline"
    # no DC announced in the summary: fall back to the node flagged is_dc
    assert st["dc"] == "db01"


def test_xml_bytes_and_leading_noise_accepted():
    raw = read(LAB / "crm_mon-1_xml_db_initial.xml")
    st = cluster.parse_crm_mon_xml(("warning: something\n" + raw).encode())
    assert cluster.group_node(st, "grp-pgpool") == "db01"


# --------------------------------------------------------------------------- text, Pacemaker 2.1


@pytest.mark.parametrize("name, nodes, where", [
    ("crm_mon-1_db_initial.txt", {"db01": "online", "db02": "online"}, "db01"),
    ("crm_mon-1_db01_standby.txt", {"db01": "standby", "db02": "online"}, "db02"),
    ("crm_mon-1_pgpool_killed.txt", {"db01": "online", "db02": "online"}, "db02"),
    ("fault_corosync_killed_db01.txt", {"db01": "offline", "db02": "online"}, "db02"),
    ("fault_corosync_killed_db01_rejoined.txt", {"db01": "online", "db02": "online"}, "db02"),
    ("fault_pacemaker_stopped_db02.txt", {"db01": "online", "db02": "offline"}, "db01"),
    ("fault_partition_db01_view_db01.txt", {"db01": "online", "db02": "offline"}, "db01"),
    ("fault_partition_db01_view_db02.txt", {"db01": "offline", "db02": "online"}, "db02"),
    ("fault_partition_healed.txt", {"db01": "online", "db02": "online"}, "db02"),
    ("fault_partition_bridge_side.txt", {"db01": "online", "db02": "online"}, "db01"),
])
def test_text_21_db_screens(name, nodes, where):
    st = text(name, LAB)
    assert st["source"] == "text"
    assert states(st) == nodes
    assert cluster.group_node(st, "grp-pgpool") == where


@pytest.mark.parametrize("name, nodes, where", [
    ("crm_mon-1_lb_initial.txt", {"lb01": "online", "lb02": "online"}, "lb01"),
    ("crm_mon-1_lb01_standby.txt", {"lb01": "standby", "lb02": "online"}, "lb02"),
])
def test_text_21_lb_screens(name, nodes, where):
    st = text(name, LAB)
    assert states(st) == nodes
    assert st["dc"] == "lb02" and st["quorum"] is True
    assert cluster.group_node(st, "grp-apache") == where
    assert [r["agent"] for r in st["resources"]] == ["ocf:heartbeat:IPaddr2",
                                                     "ocf:heartbeat:apache"]


def test_text_21_summary_and_partition_views_disagree():
    # the two halves of a partition each believe they hold the group: that is the evidence
    a = text("fault_partition_db01_view_db01.txt", LAB)
    b = text("fault_partition_db01_view_db02.txt", LAB)
    assert (a["dc"], b["dc"]) == ("db01", "db02")
    assert cluster.group_node(a, "grp-pgpool") != cluster.group_node(b, "grp-pgpool")


def test_text_21_failed_resource_action_friendly_form():
    st = text("crm_mon-1_pgpool_killed.txt", LAB)
    assert st["failed_actions"] == [{
        "resource": "pgpool", "node": "db02", "operation": "monitor", "rc": 7,
        "reason": "not running", "exitstatus": "not running", "exitreason": "",
        "status": "complete", "interval": 10000, "call": None,
        "last_rc_change": "Wed Nov 25 16:48:08 2026", "op_key": "pgpool_monitor_10000",
    }]
    assert cluster.is_healthy(st, "grp-pgpool") is False


def test_text_21_partial_screens_without_node_list():
    st = text("fault_kill_apache_lb01.txt", LAB)
    assert st["nodes"] == []
    assert cluster.group_node(st, "grp-apache") == "lb01"
    assert [(f["resource"], f["node"], f["rc"]) for f in st["failed_actions"]] == [
        ("apache", "lb01", 7)]


def test_text_21_pcs_status_daemon_section_ignored():
    st = text("pcs_crm_status_and_legacy_U.txt", LAB)
    assert states(st) == {"db01": "online", "db02": "online"}
    assert cluster.group_node(st, "grp-pgpool") == "db01"
    assert [r["id"] for r in st["resources"]] == ["db-vip", "pgpool"]


def test_text_21_migration_summary_fail_counts():
    lines = read(LAB / "crm_resource_cleanup.txt").splitlines()[:6]
    st = cluster.parse_crm_mon_text("\n".join(lines))
    assert st["fail_counts"] == [{"resource": "pgpool", "node": "db02", "fail_count": 1,
                                  "last_failure": "Wed Nov 25 16:48:08 2026"}]
    assert st["failed_actions"][0]["node"] == "db02"


def test_text_21_unmanaged_flag():
    lines = read(LAB / "pgpool_manual_stop_start_unmanaged.txt").splitlines()
    screen = "\n".join(lines[5:7])
    st = cluster.parse_crm_mon_text(screen)
    assert [(r["id"], r["group"], r["node"], r["managed"]) for r in st["resources"]] == [
        ("pgpool", "grp-pgpool", "db02", False)]


@pytest.mark.parametrize("name", sorted(p.name for p in PCMK.glob("*.xml")
                                        if p.name not in ("cib-base.xml", "not_connected.xml")))
def test_text_and_xml_agree_on_simulated_states(name):
    """crm_mon's text and XML of the same CIB give the same nodes, placement and failures."""
    x = xml(name)
    t = text(name.replace(".xml", ".txt"))
    assert states(t) == states(x)
    assert {n["name"]: n["unclean"] for n in t["nodes"]} == \
        {n["name"]: n["unclean"] for n in x["nodes"]}
    assert t["dc"] == x["dc"] and t["quorum"] == x["quorum"]
    assert cluster.group_node(t, "grp-pgpool") == cluster.group_node(x, "grp-pgpool")
    assert [(r["id"], r["node"], r["role"], r["failed"], r["managed"]) for r in t["resources"]] \
        == [(r["id"], r["node"], r["role"], r["failed"], r["managed"]) for r in x["resources"]]
    assert [(f["resource"], f["node"], f["operation"], f["interval"], f["reason"])
            for f in t["failed_actions"]] == \
        [(f["resource"], f["node"], f["operation"], f["interval"], f["reason"])
         for f in x["failed_actions"]]
    assert cluster.is_healthy(t, "grp-pgpool") == cluster.is_healthy(x, "grp-pgpool")


def test_text_21_unclean_and_timed_out_forms():
    st = text("db01_unclean.txt")
    assert st["nodes"][0]["raw_state"] == "UNCLEAN (offline)"
    assert all(r["unclean"] for r in st["resources"])
    st = text("start_timed_out.txt")
    fa = st["failed_actions"][0]
    assert fa["rc"] is None  # the friendly text does not print the code
    assert fa["status"] == "Timed Out"
    assert fa["exitreason"] == "pgpool did not listen on 9999 within 60s"


def test_text_21_show_detail_form():
    st = text("monitor_failed_show_detail.txt")
    assert [n.get("id") for n in st["nodes"]] == ["1", "2"]
    assert states(st) == {"db01": "online", "db02": "online"}
    fa = st["failed_actions"][0]
    assert (fa["resource"], fa["operation"], fa["interval"], fa["rc"], fa["call"]) == \
        ("pgpool", "monitor", 10000, 7, 4)
    assert fa["reason"] == "not running (Simulated action result)"
    assert fa["last_rc_change"] == "Wed Nov 25 17:11:48 2026"


def test_text_21_no_active_resources():
    st = text("both_standby_no_inactive.txt")
    assert states(st) == {"db01": "standby", "db02": "standby"}
    assert st["resources"] == []
    assert cluster.group_node(st, "grp-pgpool") is None
    assert "group grp-pgpool not found" in cluster.problems(st, "grp-pgpool")


def test_text_not_connected_is_a_clear_error():
    with pytest.raises(ValueError, match="could not reach the cluster"):
        text("not_connected.txt")


@pytest.mark.parametrize("bad", ["", "\n\n", "bash: crm_mon: command not found",
                                 read(LAB / "fault_partition_scheduler_log.txt")])
def test_text_without_a_screen_is_an_error(bad):
    with pytest.raises(ValueError):
        cluster.parse_crm_mon_text(bad)


# --------------------------------------------------------------------------- text, 2008 manual

RUNBOOK_SCREENS = [
    # file, nodes, group_01 runs on
    ("crm_mon_lb01_standby.txt", {"lb02": "online", "lb01": "standby"}, "lb02"),
    ("crm_mon_lb01_offline.txt", {"lb02": "online", "lb01": "offline"}, "lb02"),
    ("crm_mon_lb_ap_start_timed_out.txt", {"lb02": "online", "lb01": "online"}, "lb02"),
    ("crm_mon_lb_heartbeat_restarted.txt", {"lb02": "online", "lb01": "online"}, "lb02"),
    ("crm_mon_lb_cleaned_up.txt", {"lb02": "online", "lb01": "online"}, "lb01"),
    ("crm_mon_db01_standby.txt", {"db02": "online", "db01": "standby"}, "db02"),
    ("crm_mon_db_online_on_db02_fenced.txt", {"db02": "online", "db01": "online"}, "db02"),
    ("crm_mon_db02_standby.txt", {"db02": "standby", "db01": "online"}, "db01"),
    ("crm_mon_db_failback_done.txt", {"db02": "online", "db01": "online"}, "db01"),
    ("crm_mon_db01_offline.txt", {"db02": "online", "db01": "offline"}, "db02"),
    ("crm_mon_db_pg_start_error.txt", {"db02": "online", "db01": "online"}, "db02"),
    ("crm_mon_db_heartbeat_restarted.txt", {"db02": "online", "db01": "online"}, "db02"),
    ("crm_mon_db_cleaned_up.txt", {"db02": "online", "db01": "online"}, "db02"),
    ("crm_mon_db02_standby_bold.txt", {"db02": "standby", "db01": "online"}, "db01"),
    ("crm_mon_db_example.txt", {"db02": "online", "db01": "online"}, "db01"),
]


@pytest.mark.parametrize("name, nodes, where", RUNBOOK_SCREENS)
def test_text_2008_screens(name, nodes, where):
    st = text(name, RUNBOOK)
    assert st["source"] == "text-2008"
    assert states(st) == nodes
    assert list(states(st)) == list(nodes)  # screen order kept
    assert st["quorum"] is None  # Heartbeat 2.1's screen does not say
    assert cluster.group_node(st, "group_01") == where
    members = [r["id"] for r in cluster.group_members(st, "group_01")]
    tier = "ap" if name.startswith("crm_mon_lb") else "pg"
    assert members == ["resource_ip", "resource_" + tier, "resource_ml"]


def test_text_2008_db_details():
    st = text("crm_mon_db01_standby.txt", RUNBOOK)
    assert st["dc"] == "db02"
    assert [n["dc"] for n in st["nodes"]] == [True, False]
    assert [r["agent"] for r in st["resources"]] == [
        "heartbeat::ocf:IPAddr", "heartbeat::ocf:pgpool", "heartbeat::ocf:MailTo"]
    assert all(r["role"] == "Started" and r["node"] == "db02" for r in st["resources"])
    assert st["nodes"][1]["raw_state"] == "standby"
    assert cluster.is_healthy(st, "group_01") is True
    assert cluster.node_state(st, "DB01") == "standby"  # the manual writes DB01 too
    assert cluster.node_state(st, "db03") is None


def test_text_2008_pgpool_start_error():
    st = text("crm_mon_db_pg_start_error.txt", RUNBOOK)
    assert st["failed_actions"] == [{
        "resource": "resource_pg", "node": "db01", "operation": "start", "rc": 1,
        "reason": "Error", "exitstatus": "Error", "exitreason": "", "status": None,
        "interval": 0, "call": 13, "last_rc_change": None, "op_key": "resource_pg_start_0",
    }]
    assert cluster.failed_for(st, "group_01", node="db01") == st["failed_actions"]
    assert cluster.failed_for(st, "resource_ap") == []
    assert cluster.is_healthy(st, "group_01") is False


def test_text_2008_httpd_start_timed_out():
    st = text("crm_mon_lb_ap_start_timed_out.txt", RUNBOOK)
    [fa] = st["failed_actions"]
    assert (fa["resource"], fa["node"], fa["operation"], fa["rc"], fa["reason"], fa["call"]) \
        == ("resource_ap", "lb01", "start", -1, "Timed Out", 15)
    # the manual's screen names the apache member's agent "pgpool": a copy-paste slip in 2008
    assert [r["agent"] for r in st["resources"]][1] == "heartbeat::ocf:pgpool"


def test_text_2008_cleanup_cleared_failed_actions():
    before = text("crm_mon_db_pg_start_error.txt", RUNBOOK)
    after = text("crm_mon_db_cleaned_up.txt", RUNBOOK)
    assert before["failed_actions"] and not after["failed_actions"]
    assert cluster.is_healthy(after, "group_01") is True


def test_text_2008_offline_node():
    st = text("crm_mon_lb01_offline.txt", RUNBOOK)
    lb01 = [n for n in st["nodes"] if n["name"] == "lb01"][0]
    assert lb01["raw_state"] == "OFFLINE" and lb01["online"] is False
    assert cluster.problems(st, "group_01") == ["node lb01 is offline"]


def test_text_2008_standalone_primitive_after_indented_group():
    screen = read(RUNBOOK / "crm_mon_db_example.txt") + \
        "resource_stonith (stonith:external/ssh):      Started db02\n"
    st = cluster.parse_crm_mon_text(screen)
    assert [(r["id"], r["group"]) for r in st["resources"]][-1] == ("resource_stonith", None)
    assert cluster.group_node(st, "group_01") == "db01"


def test_text_2008_group_split_between_nodes_has_no_location():
    screen = read(RUNBOOK / "crm_mon_db_example.txt").replace(
        "resource_ml (heartbeat::ocf:MailTo):      Started db01",
        "resource_ml (heartbeat::ocf:MailTo):      Stopped")
    st = cluster.parse_crm_mon_text(screen)
    assert [r["node"] for r in st["resources"]] == ["db01", "db01", None]
    assert cluster.group_node(st, "group_01") is None
    assert cluster.is_healthy(st, "group_01") is False


def test_split_op_key():
    assert cluster.split_op_key("resource_pg_start_0") == ("resource_pg", "start", 0)
    assert cluster.split_op_key("pgpool_monitor_10000") == ("pgpool", "monitor", 10000)
    assert cluster.split_op_key("db_vip_migrate_to_0") == ("db_vip", "migrate_to", 0)
    assert cluster.split_op_key("weird") == ("weird", None, None)


def test_clone_instances_one_per_node():
    for st in (xml("with_clone.xml"), text("with_clone.txt")):
        pings = [r for r in st["resources"] if r["id"] == "ping"]
        assert [(r["node"], r["role"], r["group"]) for r in pings] == [
            ("db01", "Started", None), ("db02", "Started", None)]
        assert cluster.group_node(st, "grp-pgpool") == "db01"
        assert cluster.is_healthy(st, "grp-pgpool") is True


def test_text_21_no_dc_and_no_quorum():
    screen = read(LAB / "fault_corosync_killed_db01.txt").replace(
        "Current DC: db02 (version 2.1.5-a3f44794f94) - partition with quorum",
        "Current DC: db02 (version 2.1.5-a3f44794f94) - partition WITHOUT quorum")
    st = cluster.parse_crm_mon_text(screen)
    assert st["dc"] == "db02" and st["quorum"] is False
    assert "partition without quorum" in cluster.problems(st)
    screen = read(RUNBOOK / "crm_mon_db01_offline.txt").replace(
        "Current DC: db02 (b6587dd4-a24a-4759-82d1-8283ed09d2bf)", "Current DC: NONE")
    st = cluster.parse_crm_mon_text(screen)
    assert st["dc"] is None
    assert not any(n["dc"] for n in st["nodes"])


def test_text_20_failed_action_form():
    screen = ("Failed Resource Actions:\n"
              "* pgpool_monitor_10000 on db02 'not running' (7): call=13, status=complete, "
              "exitreason='', last-rc-change='Wed Nov 25 16:48:08 2026', queued=0ms, exec=0ms\n")
    [fa] = cluster.parse_crm_mon_text(screen)["failed_actions"]
    assert (fa["resource"], fa["operation"], fa["interval"], fa["node"], fa["rc"],
            fa["status"], fa["reason"], fa["call"]) == \
        ("pgpool", "monitor", 10000, "db02", 7, "complete", "not running", 13)
