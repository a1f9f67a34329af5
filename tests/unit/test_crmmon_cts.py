"""The crm_mon parser on Pacemaker's own CLI regression outputs (cts/cli/regression.crm_mon.exp,
samples in tests/fixtures/captures/pacemaker/cts, origin in its README.md): clones, bundles,
guest and remote nodes, maintenance (cluster, node, resource), bans, a filtered view."""

import pathlib

from hatasks import crmmon

CTS = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "captures" / "pacemaker" / "cts"


def parse(name):
    return crmmon.parse_crm_mon_xml((CTS / name).read_text())


def test_basic_clones_bundles_remote_nodes_and_a_ban():
    st = parse("basic.xml")
    types = {n["name"]: n["type"] for n in st["nodes"]}
    assert types["cluster01"] == "member" and types["httpd-bundle-0"] == "remote"
    assert st["stonith_enabled"] is True and st["maintenance_mode"] is False
    ping = [r for r in st["resources"] if r["id"] == "ping"]
    assert sorted(r["node"] for r in ping) == ["cluster01", "cluster02"]  # one per clone instance
    assert any(r["id"] == "httpd" and r["node"] == "httpd-bundle-0" for r in st["resources"])
    inactive = [r for r in st["resources"] if r.get("group") == "inactive-group"]
    assert inactive and all(crmmon.disabled(r) for r in inactive)
    assert crmmon.group_node(st, "inactive-group") is None
    assert st["bans"] == [{"id": "not-on-cluster1", "resource": "dummy", "node": "cluster01",
                           "weight": "-1000000"}]
    words = crmmon.problems(st)
    assert "constraint not-on-cluster1 keeps dummy off cluster01" in words
    assert "resource inactive-dummy-1 is disabled (target-role Stopped)" in words
    assert not any("FAILED" in w and "inactive" in w for w in words)


def test_cluster_maintenance_mode_is_read_and_named():
    st = parse("maintenance_mode.xml")
    assert st["maintenance_mode"] is True
    assert all(r["maintenance"] for r in st["resources"])
    words = crmmon.problems(st)
    assert words[0].startswith("cluster maintenance-mode is on")
    # under cluster maintenance every resource is unmanaged: named once, as maintenance
    assert not any(w.endswith("is unmanaged") for w in words)


def test_node_maintenance_is_read():
    st = parse("maintenance_node.xml")
    maint = [n["name"] for n in st["nodes"] if n["maintenance"]]
    assert "cluster02" in maint
    assert "node cluster02 is in maintenance" in crmmon.problems(st)
    assert st["maintenance_mode"] is False


def test_resource_maintenance_meta_attribute():
    st = parse("rsc_maint.xml")
    assert st["maintenance_mode"] is False
    maint = {r["id"] for r in st["resources"] if r["maintenance"]}
    assert maint and all(not r["managed"] for r in st["resources"] if r["maintenance"])
    assert any(w.endswith("is in maintenance (unmanaged)") for w in crmmon.problems(st))


def test_location_on_an_offline_node_is_dropped():
    st = parse("unmanaged_offline.xml")
    rsc2 = next(r for r in st["resources"] if r["id"] == "rsc2")
    assert {n["name"]: n["state"] for n in st["nodes"]}["cluster02"] == "offline"
    assert rsc2["node"] is None and rsc2["nodes"] == [] and rsc2["stale_on"] == ["cluster02"]
    assert crmmon.running_on(st, "cluster02") == []
    rsc1 = next(r for r in st["resources"] if r["id"] == "rsc1")
    assert rsc1["node"] == "cluster01"


def test_filtered_view_with_no_node_is_not_healthy():
    st = parse("filtered_no_node.xml")
    assert st["nodes"] == []
    assert "crm_mon shows no node (filtered view, or the stack is starting)" in crmmon.problems(st)


def test_bundle_filtered_view():
    st = parse("bundle.xml")
    ids = {r["id"] for r in st["resources"]}
    assert "httpd" in ids


STATES = CTS.parent / "states"


def lab(name):
    return crmmon.parse_crm_mon_xml((STATES / name).read_text())


def test_lab_pgpool_stopped_reads_unmanaged_and_still_placed():
    st = lab("pgpool_stopped.xml")
    pg = next(r for r in st["resources"] if r["id"] == "pgpool")
    assert pg["managed"] is False and pg["node"] == "db01"
    assert "resource pgpool is unmanaged" in crmmon.problems(st, "grp-pgpool")


def test_lab_standby_left_and_maintenance_mode():
    st = lab("standby_left.xml")
    assert {n["name"]: n["state"] for n in st["nodes"]}["db02"] == "standby"
    assert "node db02 is standby" in crmmon.problems(st, "grp-pgpool")
    st = lab("maintenance_mode.xml")
    assert st["maintenance_mode"] is True
    assert crmmon.problems(st, "grp-pgpool")[0].startswith("cluster maintenance-mode is on")


def test_lab_ban_left_in_the_cib():
    found = crmmon.cli_constraints((STATES / "cib_constraints_ban.xml").read_text())
    assert found == [{"id": "cli-ban-grp-pgpool-on-db02", "resource": "grp-pgpool",
                      "node": "db02", "score": -1000000, "kind": "ban"}]
    assert crmmon.cli_constraints("") == []
    move = ('<constraints><rsc_location id="cli-prefer-grp-pgpool" rsc="grp-pgpool" '
            'role="Started" node="db02" score="INFINITY"/><rsc_location id="loc-home" '
            'rsc="grp-pgpool" node="db01" score="100"/></constraints>')
    assert crmmon.cli_constraints(move) == [{"id": "cli-prefer-grp-pgpool",
                                             "resource": "grp-pgpool", "node": "db02",
                                             "score": 1000000, "kind": "move"}]
