"""pgpool tasks on the real lab: status, switch/attach/recover with the newest-data record,
config check (ok and broken), stop/start under Pacemaker. Every test leaves pgpool with both
backends up, equal data and no failed action."""

import json

import pytest

from hatasks import remote

from .conftest import INSTANCE

pytestmark = pytest.mark.lab


def pool(inv):
    # exit 3 while pgpool is degenerated: the JSON is what the tests read
    proc = inv("pgpool.status", "--format", "json", check=False)
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout)


def hb_db(inv):
    # exit 3 while a node is OFFLINE: the JSON is what the tests read
    proc = inv("hb.status", "--cluster", "db", "--format", "json", check=False)
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout)


def pgpool_node(inv):
    for r in hb_db(inv)["resources"]:
        if r["id"] == "pgpool" and r["role"] == "Started":
            return r["node"]
    raise AssertionError("pgpool is not started anywhere")


def other(node):
    return {"db01": "db02", "db02": "db01"}[node]


def via_pgpool(hctx, statement, params=None):
    c = remote.inventory(hctx).cluster("db")
    remote.sql_rows(hctx, "db01", statement, params, port=int(c.vars["pgpool_port"]),
                    target=c.vars["vip"], dbname="GYOM_DB")


def restore_health(inv):
    """Both backends attached and equal (recover if not)."""
    data = pool(inv)
    for b in data["backends"]:
        if b["status"] != "up" and inv("pgpool.attach", "--node", b["host"], "--yes",
                                       check=False).returncode != 0:
            inv("pgpool.recover", "--node", b["host"], "--yes", timeout=600)
    if inv("pg.compare", check=False).returncode != 0:
        inv("pgpool.recover", "--node", "db02", "--yes", timeout=600)


def assert_healthy(inv):
    data = pool(inv)
    assert [b["status"] for b in data["backends"]] == ["up", "up"]
    assert data["degenerated"] is False
    inv("pg.compare")
    assert [f for f in hb_db(inv)["failed_actions"] if f["resource"] == "pgpool"] == []


def test_status_both_backends_up(inv):
    data = pool(inv)
    assert data["reachable"] is True
    assert [(b["node_id"], b["host"], b["status"]) for b in data["backends"]] == [
        (0, "db01", "up"), (1, "db02", "up")]
    assert data["degenerated"] is False and data["newest"] is None


def test_switch_status_attach_recover(inv, hctx):
    row = 900000 + INSTANCE
    try:
        inv("pgpool.switch", "--node", "db02", "--yes")
        data = pool(inv)
        assert data["degenerated"] is True
        assert data["newest"] == "db01"
        assert [b["status"] for b in data["backends"]] == ["up", "down"]
        records = json.loads(inv("history", "--format", "json", "--limit", "0").stdout)
        newest = [r for r in records if r["event"] == "newest"]
        assert newest and newest[-1]["newest"] == "db01"
        assert newest[-1]["evidence"]["degenerated"] is True
        assert "db02(node 1) down" in newest[-1]["evidence"]["pool_nodes"]
        assert ("pgpool.switch", "done") in [(r["action"], r["event"]) for r in records]

        # the last backend up cannot be detached
        refused = inv("pgpool.switch", "--side", "master", "--yes", check=False)
        assert refused.returncode == 7, refused.stderr
        assert pool(inv)["backends"][0]["status"] == "up"

        # written while degenerated: only db01 gets it
        via_pgpool(hctx, "INSERT INTO customers VALUES (%s, 'while degenerated', %s, 'Osaka', now())",
                   (row, f"degenerated{row}@example.invalid"))
        # it missed that write: attaching it as it is would serve stale reads
        refused = inv("pgpool.attach", "--node", "1", "--yes", check=False)
        assert refused.returncode == 7, refused.stderr
        assert "differ from db01's in 1 table(s), first GYOM_DB.public.customers" in refused.stderr
        attached = inv("pgpool.attach", "--node", "1", "--force", "--yes")
        assert "attached WITHOUT resync" in attached.stderr
        assert [b["status"] for b in pool(inv)["backends"]] == ["up", "up"]
        cmp = inv("pg.compare", "--format", "json", check=False)
        assert cmp.returncode == 3, cmp.stderr
        diffs = json.loads(cmp.stdout)["differences"]
        assert [(d["database"], d["table"]) for d in diffs] == [("GYOM_DB", "public.customers")]
        assert diffs[0]["counts"]["db01"] == diffs[0]["counts"]["db02"] + 1

        inv("pgpool.recover", "--node", "db02", "--yes", timeout=600)
        inv("pg.compare")
    finally:
        restore_health(inv)
        via_pgpool(hctx, "DELETE FROM customers WHERE id = %s", (row,))
    assert_healthy(inv)


def test_check_idle_node_ok_live_node_refused_broken_config_reported(inv):
    live = pgpool_node(inv)
    idle = other(live)
    refused = inv("pgpool.check", "--host", live, check=False)
    assert refused.returncode == 7, refused.stderr
    assert "runs on" in refused.stderr
    ok = json.loads(inv("pgpool.check", "--host", idle, "--format", "json").stdout)
    assert ok["ok"] is True and ok["result"] == "started"
    try:
        inv("lab.fault", "--host", idle, "--kind", "pgpool")
        bad = inv("pgpool.check", "--host", idle, check=False)
        assert bad.returncode == 3, bad.stdout + bad.stderr
        assert 'invalid value for parameter "port"' in bad.stderr
    finally:
        inv("lab.heal", "--host", idle)
    assert json.loads(inv("pgpool.check", "--host", idle, "--format", "json").stdout)["ok"] is True
    # the test instances left nothing behind and never touched the live pgpool
    assert pgpool_node(inv) == live
    assert_healthy(inv)


def test_stop_shows_recorded_newest_then_start(inv):
    live = pgpool_node(inv)
    main = pool(inv)["main"]
    try:
        inv("pgpool.stop", "--host", live, "--mode", "fast", "--yes")
        down = inv("pgpool.status", check=False)
        assert down.returncode == 3
        assert "recorded newest" in down.stdout
        data = json.loads(inv("pgpool.status", "--format", "json", check=False).stdout)
        assert data["reachable"] is False
        assert data["recorded"]["newest"] == main
        assert data["recorded"]["evidence"]["in_sync"] is True
        assert data["recorded"]["evidence"]["reason"] == f"pgpool.stop on {live}"
        # a second copy on the other node is refused
        second = inv("pgpool.start", "--host", other(live), "--yes", check=False)
        assert second.returncode == 3, second.stderr
    finally:
        inv("pgpool.start", "--host", live, "--yes")
    assert pgpool_node(inv) == live
    assert_healthy(inv)
