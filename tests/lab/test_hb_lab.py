"""hb tasks on the real lab: status, standby/online, cleanup of injected failures, stack
stop/start, log, --dry, bad inputs.

Every check of an effect reads crm_mon again here, independently of hb's own verification:
`crm_mon -1 --output-as=xml` over ssh, parsed with ElementTree in this file. No test assumes
where a group runs: it reads it. Every test leaves both clusters healthy.
"""

import json
import re
import time
import xml.etree.ElementTree as ET

import invoke
import pytest

from hatasks import inventory as inventory_mod
from hatasks import remote

from .conftest import INSTANCE, ROOT

pytestmark = pytest.mark.lab

INVENTORY = (ROOT / "hosts.ini" if INSTANCE == 0
             else ROOT / "lab" / ".state" / str(INSTANCE) / "hosts.ini")


def inventory():
    return inventory_mod.load(str(INVENTORY))


def _ctx():
    return invoke.Context(config=invoke.Config(overrides={"hatasks": {
        "inventory": str(INVENTORY), "connect_timeout": 10}}))


def ssh(host, command, timeout=60):
    """Run COMMAND on HOST as root over ssh; (exit code, stdout, stderr)."""
    res = remote.run(_ctx(), host, command, probe=True, warn=True, timeout=timeout)
    return res.exited, res.stdout, res.stderr


def crm(cluster, hosts=None):
    """Independent crm_mon reading: {"read_on", "nodes": {name: state}, "res": {id: (role, node)},
    "groups": {group: node or None}, "failures": [(resource, node, task)]}."""
    cl = inventory().cluster(cluster)
    for host in hosts or cl.host_names:
        try:
            rc, out, _ = ssh(host, "crm_mon -1 --output-as=xml")
        except Exception:
            continue
        if rc != 0 or "<nodes>" not in out:
            continue
        root = ET.fromstring(out[out.find("<"):])
        nodes = {}
        for n in root.find("nodes"):
            if n.get("online") != "true":
                nodes[n.get("name")] = "offline"
            elif n.get("standby") == "true":
                nodes[n.get("name")] = "standby"
            else:
                nodes[n.get("name")] = "online"
        res, members = {}, {}
        for g in root.find("resources").iter("group"):
            members[g.get("id")] = [r.get("id") for r in g.findall("resource")]
        for r in root.find("resources").iter("resource"):
            where = [x.get("name") for x in r.findall("node")]
            res[r.get("id")] = (r.get("role"), where[0] if len(where) == 1 else None)
        groups = {}
        for g, ids in members.items():
            spots = {res[i] for i in ids}
            one = spots.pop() if len(spots) == 1 else (None, None)
            groups[g] = one[1] if one[0] == "Started" else None
        failures = []
        fel = root.find("failures")
        if fel is not None:
            for f in fel:
                rsc = f.get("op_key", "").rsplit("_", 2)[0]
                failures.append((rsc, f.get("node"), f.get("task")))
        return {"read_on": host, "nodes": nodes, "res": res, "groups": groups,
                "failures": failures}
    raise AssertionError(f"no node of {cluster} answered crm_mon")


def wait_crm(cluster, check, timeout=90, hosts=None):
    """Poll the independent reading until check(state) holds; the last state otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        state = crm(cluster, hosts)
        if check(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def healthy(state):
    return (all(s == "online" for s in state["nodes"].values()) and not state["failures"]
            and all(state["groups"].values()))


def assert_healthy(cluster):
    state = wait_crm(cluster, healthy, timeout=120)
    assert healthy(state), f"{cluster} not healthy: {state}"
    return state


def group_of(cluster):
    return inventory().cluster(cluster).vars["group"]


def one_line_error(proc, code):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize("cluster", ["db", "lb"])
def test_status_matches_crm_mon(inv, cluster):
    proc = inv("hb.status", "--cluster", cluster, "--format", "json")
    data = json.loads(proc.stdout)
    state = crm(cluster)
    assert {n["name"]: n["state"] for n in data["nodes"]} == state["nodes"]
    group = group_of(cluster)
    mine = {r["id"]: r["node"] for r in data["resources"] if r["group"] == group}
    assert set(mine.values()) == {state["groups"][group]}
    assert data["failed_actions"] == []


def test_status_of_every_cluster_is_readable(inv):
    proc = inv("hb.status")
    for word in ("== cluster db", "== cluster lb", group_of("db"), group_of("lb"),
                 "failed actions: none"):
        assert word in proc.stdout
    data = json.loads(inv("hb.status", "--format", "json").stdout)
    assert data["clusters"] == ["db", "lb"]


# --------------------------------------------------------------------------- standby / online


def test_standby_moves_the_db_group_and_online_brings_the_node_back(inv):
    group = group_of("db")
    before = assert_healthy("db")
    node = before["groups"][group]
    other = next(n for n in before["nodes"] if n != node)

    inv("hb.standby", "--node", node, "--yes")
    # hb.standby returned: the move must already be complete in an independent reading
    after = crm("db")
    assert after["nodes"][node] == "standby"
    assert after["groups"][group] == other
    assert all(where != node for _, where in after["res"].values())

    inv("hb.online", "--node", node, "--yes")
    back = crm("db")
    assert back["nodes"][node] == "online"
    assert back["groups"][group] is not None
    assert_healthy("db")


def test_standby_of_the_lb_node_running_apache_and_back(inv):
    group = group_of("lb")
    node = assert_healthy("lb")["groups"][group]
    inv("hb.standby", "--node", node, "--yes")
    after = crm("lb")
    assert after["nodes"][node] == "standby" and after["groups"][group] not in (None, node)
    inv("hb.online", "--node", node, "--yes")
    assert crm("lb")["nodes"][node] == "online"
    assert_healthy("lb")


def test_dry_standby_changes_nothing(inv):
    group = group_of("db")
    before = assert_healthy("db")
    node = before["groups"][group]
    proc = inv("--dry", "hb.standby", "--node", node)
    assert "[dry]" in proc.stdout and f"crm_standby -N {node} -v on" in proc.stdout
    time.sleep(3)  # a standby that slipped through would have moved the group by now
    after = crm("db")
    assert (after["nodes"], after["res"]) == (before["nodes"], before["res"])


def test_standby_refused_without_yes_and_without_a_terminal(inv):
    before = assert_healthy("db")
    node = before["groups"][group_of("db")]
    line = one_line_error(inv("hb.standby", "--node", node, check=False), 7)
    assert "--yes" in line
    assert crm("db")["nodes"] == before["nodes"]


# --------------------------------------------------------------------------- cleanup


def _fault_then_cleanup(inv, cluster, kind, resource):
    group = group_of(cluster)
    node = assert_healthy(cluster)["groups"][group]
    inv("lab.fault", "--host", node, "--kind", kind)
    try:
        failed = wait_crm(cluster, lambda s: any(f[0] == resource for f in s["failures"]),
                          timeout=120)
    finally:
        inv("lab.heal", "--host", node)
    failures = [f for f in failed["failures"] if f[0] == resource]
    assert failures, f"no failed action of {resource} after lab.fault --kind {kind}: {failed}"
    for failed_node in sorted({f[1] for f in failures}):
        inv("hb.cleanup", "--resource", resource, "--node", failed_node, "--yes")
    after = crm(cluster)
    assert not [f for f in after["failures"] if f[0] == resource], after
    assert after["res"][resource][0] == "Started", after
    assert_healthy(cluster)


def test_cleanup_clears_an_injected_pgpool_failure(inv):
    _fault_then_cleanup(inv, "db", "pgpool", "pgpool")


def test_cleanup_clears_an_injected_httpd_failure(inv):
    _fault_then_cleanup(inv, "lb", "httpd", "apache")


def test_cleanup_of_an_unknown_resource_is_refused(inv):
    line = one_line_error(inv("hb.cleanup", "--resource", "nosuch", "--node", "db01", "--yes",
                              check=False), 2)
    assert "unknown resource 'nosuch'" in line and "pgpool" in line
    # apache is a resource of the lb cluster, not of db02's
    line = one_line_error(inv("hb.cleanup", "--resource", "apache", "--node", "db02", "--yes",
                              check=False), 2)
    assert "unknown resource 'apache'" in line


# --------------------------------------------------------------------------- stack stop / start


def test_stop_then_start_the_stack_of_one_node(inv):
    group = group_of("db")
    before = assert_healthy("db")
    node = next(n for n in before["nodes"] if n != before["groups"][group])  # the idle node
    peer = before["groups"][group]

    inv("hb.stop", "--host", node, "--yes", timeout=300)
    seen = crm("db", hosts=[peer])
    assert seen["nodes"][node] == "offline"
    assert seen["groups"][group] == peer
    rc, out, _ = ssh(node, inventory().host(node).vars["stack_stop"].replace(" stop", " status"))
    assert rc == 3, out  # both daemons stopped on the node itself

    inv("hb.start", "--host", node, "--yes", timeout=300)
    assert crm("db", hosts=[peer])["nodes"][node] == "online"
    assert_healthy("db")


def test_stop_refused_when_it_would_stop_the_service(inv):
    """With the peer in standby, stopping the node running the group would stop the service."""
    group = group_of("db")
    before = assert_healthy("db")
    running = before["groups"][group]
    idle = next(n for n in before["nodes"] if n != running)
    inv("hb.standby", "--node", idle, "--yes")
    try:
        line = one_line_error(inv("hb.stop", "--host", running, "--yes", check=False), 3)
        assert "service would stop" in line
        assert crm("db")["nodes"][running] == "online"
    finally:
        inv("hb.online", "--node", idle, "--yes")
    assert_healthy("db")


# --------------------------------------------------------------------------- log


def test_log_shows_error_lines_of_the_cluster_log(inv):
    data = json.loads(inv("hb.log", "--host", "db01", "--lines", "20", "--format", "json").stdout)
    assert data["host"] == "db01" and data["log"] == inventory().host("db01").vars["ha_log"]
    assert len(data["entries"]) <= 20
    rc, out, _ = ssh("db01", f"cat {data['log']}")
    assert rc == 0
    lines = [ln.rstrip() for ln in out.splitlines()]
    bad = [ln for ln in lines if re.search(r"(ERROR|FATAL|CRIT)|\s(error|crit|alert|emerg):", ln)]
    for entry in data["entries"]:  # every line shown is a real error line of that log
        assert entry["line"] in bad
    # the newest error lines, in the log's order
    assert [e["line"] for e in data["entries"]] == bad[-20:]


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("args, code, words", [
    (("hb.standby", "--node", "db01;id", "--yes"), 2, "not allowed"),
    (("hb.standby", "--node", "db09", "--yes"), 2, "known hosts"),
    (("hb.online", "--node", "$(id)", "--yes"), 2, "not allowed"),
    (("hb.cleanup", "--resource", "pgpool", "--node", "db01 db02", "--yes"), 2, "not allowed"),
    (("hb.status", "--cluster", "web"), 2, "unknown cluster"),
    (("hb.log", "--host", "lb01", "--lines", "0"), 2, "--lines"),
    (("hb.start", "--host", "nosuch", "--yes"), 2, "known hosts"),
])
def test_bad_inputs_exit_non_zero_with_one_line(inv, args, code, words):
    line = one_line_error(inv(*args, check=False), code)
    assert words in line


def test_a_host_that_does_not_answer_is_named(inv):
    """Cable pulled on the idle LB node: a task addressed to it fails with UNREACHABLE naming it;
    hb.status still answers from the other node."""
    group = group_of("lb")
    before = assert_healthy("lb")
    idle = next(n for n in before["nodes"] if n != before["groups"][group])
    inv("lab.fault", "--host", idle, "--kind", "network")
    try:
        line = one_line_error(inv("hb.log", "--host", idle, check=False), 4)
        assert idle in line and "unreachable" in line
        proc = inv("hb.status", "--cluster", "lb", "--format", "json", check=False)
        assert proc.returncode == 3 and idle in proc.stderr  # the node is OFFLINE
        data = json.loads(proc.stdout)
        assert data["views"]["lb"]["read_on"] != idle
    finally:
        inv("lab.heal", "--host", idle)
    # without fencing the isolated node may have started the group too: Pacemaker recovers
    assert_healthy("lb")
