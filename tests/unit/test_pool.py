"""hatasks.pool on real pgpool outputs: the lab's pgpool-II 4.3.5 (SHOW pool_nodes, pcp_node_info,
SHOW pool_status) and the 2008 manual's pgpool 3.4 `show pool_status` tables."""

import pathlib

import pytest

from hatasks import pool

FIX = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
LAB = FIX / "lab-samples"
RUNBOOK = FIX / "runbook"


def read(path):
    return path.read_text(encoding="utf-8")


def paragraphs(path, needle):
    """The blank-line separated paragraphs of a capture that contain ``needle``."""
    return [p for p in read(path).split("\n\n") if needle in p]


def view(status):
    return [(b["node_id"], b["host"], b["port"], b["status"], b["role"])
            for b in status["backends"]]


# --------------------------------------------------------------------------- SHOW pool_nodes


def test_pool_nodes_aligned_both_up():
    st = pool.parse_pool_nodes(read(LAB / "show_pool_nodes.txt"))
    assert view(st) == [(0, "db01", 5432, "up", "main"), (1, "db02", 5432, "up", "replica")]
    assert st["degenerated"] is False
    assert st["replicating"] is True
    assert st["newest"] is None
    assert st["main"] == "db01"
    b0 = st["backends"][0]
    assert b0["pg_status"] == "up" and b0["pg_role"] == "main"
    assert b0["weight"] == 0.5
    assert b0["load_balance_node"] is False
    assert b0["last_status_change"] == "2026-11-25 16:46:59"
    assert pool.newest_backend(st) is None


def test_pool_nodes_detached_backend_is_down_newest_is_the_other():
    [detached, attached] = paragraphs(LAB / "pcp_detach_attach.txt", "node_id | hostname")
    st = pool.parse_pool_nodes(detached)
    assert view(st) == [(0, "db01", 5432, "up", "main"), (1, "db02", 5432, "down", "replica")]
    # pgpool detached db02 but its PostgreSQL still runs
    assert st["backends"][1]["pg_status"] == "up"
    assert st["degenerated"] is True and st["replicating"] is False
    assert st["newest"] == "db01"
    assert pool.newest_backend(st) == "db01"
    st = pool.parse_pool_nodes(attached)
    assert st["degenerated"] is False and st["newest"] is None
    assert st["backends"][1]["last_status_change"] == "2026-11-25 16:47:14"


def test_pool_nodes_postmaster_killed_on_db01_main_moves():
    [table] = paragraphs(LAB / "fault_kill_postgres_db01.txt", "node_id | hostname")
    st = pool.parse_pool_nodes(table)
    assert view(st) == [(0, "db01", 5432, "down", "replica"), (1, "db02", 5432, "up", "main")]
    assert st["backends"][0]["pg_status"] == "down"
    assert st["main"] == "db02"
    assert st["newest"] == "db02"


def test_pool_nodes_unaligned_rows_after_recovery():
    text = read(LAB / "fault_kill_postgres_db01.txt")
    rows = "\n".join(ln for ln in text.splitlines() if ln.startswith(("0|", "1|")))
    st = pool.parse_pool_nodes(rows)
    assert view(st) == [(0, "db01", 5432, "up", "main"), (1, "db02", 5432, "up", "replica")]
    assert st["backends"][0]["last_status_change"] == "2026-11-25 16:49:27"
    assert st["degenerated"] is False


@pytest.mark.parametrize("name", ["pgpool_manual_stop_start_unmanaged.txt",
                                  "pg_maintenance_alt_port.txt",
                                  "crm_mon-1_pgpool_kill9_fixedRA.txt"])
def test_pool_nodes_psql_At_rows_among_other_output(name):
    st = pool.parse_pool_nodes(read(LAB / name))
    assert [(b["host"], b["status"]) for b in st["backends"]] == [("db01", "up"), ("db02", "up")]
    assert st["replicating"] is True and st["newest"] is None


def test_pool_nodes_recovery_failure_both_snapshots_agree():
    tables = paragraphs(LAB / "pcp_recovery_node.txt", "node_id | hostname")
    assert len(tables) == 3
    first, second, after = (pool.parse_pool_nodes(t) for t in tables)
    # the failed pcp_recovery_node changed nothing
    assert view(first) == view(second)
    assert first["newest"] == "db01" and first["backends"][1]["pg_status"] == "down"
    assert after["degenerated"] is False


def test_pool_nodes_two_results_in_one_input_is_an_error():
    with pytest.raises(ValueError, match="more than one SHOW pool_nodes result"):
        pool.parse_pool_nodes(read(LAB / "pcp_detach_attach.txt"))
    with pytest.raises(ValueError, match="more than one SHOW pool_nodes result"):
        pool.parse_pool_nodes(read(LAB / "fault_kill_postgres_db01.txt"))


def test_pool_nodes_from_psycopg2_dicts():
    rows = [
        {"node_id": "0", "hostname": "db01", "port": "5432", "status": "down",
         "pg_status": "down", "lb_weight": "0.500000", "role": "replica", "pg_role": "replica",
         "select_cnt": "0", "load_balance_node": "false", "replication_delay": "0",
         "replication_state": "", "replication_sync_state": "",
         "last_status_change": "2026-11-25 16:49:20"},
        {"node_id": "1", "hostname": "db02", "port": "5432", "status": "up", "pg_status": "up",
         "lb_weight": "0.500000", "role": "main", "pg_role": "main", "select_cnt": "0",
         "load_balance_node": "true", "replication_delay": "0", "replication_state": "",
         "replication_sync_state": "", "last_status_change": "2026-11-25 16:48:56"},
    ]
    st = pool.parse_pool_nodes(rows)
    assert view(st) == [(0, "db01", 5432, "down", "replica"), (1, "db02", 5432, "up", "main")]
    assert st["newest"] == "db02"
    assert st["backends"][1]["load_balance_node"] is True


def test_pool_nodes_from_tuples_in_any_order():
    rows = [
        ("1", "db02", "5432", "up", "up", "0.500000", "replica", "replica", "0", "true", "0",
         "", "", "2026-11-25 16:46:59"),
        ("0", "db01", "5432", "waiting", "up", "0.500000", "main", "main", "0", "false", "0",
         "", "", "2026-11-25 16:46:59"),
    ]
    st = pool.parse_pool_nodes(rows)
    assert [b["node_id"] for b in st["backends"]] == [0, 1]
    # "waiting": up, no client connected to it yet
    assert st["backends"][0]["status"] == "up"
    assert st["backends"][0]["pool_status"] == "waiting"
    assert st["degenerated"] is False


def test_pool_nodes_quarantine_counts_as_down():
    text = read(LAB / "show_pool_nodes.txt").replace(
        "| 1       | db02     | 5432 | up     |", "| 1       | db02     | 5432 | quarantine |")
    text = text.replace(" 1       | db02     | 5432 | up     |",
                        " 1       | db02     | 5432 | quarantine |")
    st = pool.parse_pool_nodes(text)
    assert st["backends"][1]["status"] == "down"
    assert st["backends"][1]["pool_status"] == "quarantine"
    assert st["newest"] == "db01"


def test_pool_nodes_all_down_has_no_newest():
    rows = [(0, "db01", 5432, "down", "down", "0.5", "replica", "replica", 0, False, 0, "", "",
             "x"),
            (1, "db02", 5432, "down", "down", "0.5", "main", "main", 0, False, 0, "", "", "x")]
    st = pool.parse_pool_nodes(rows)
    assert st["degenerated"] is True
    assert st["newest"] is None
    assert pool.newest_backend(st) is None


def test_pool_nodes_three_backends_two_up_newest_is_main():
    st = pool.summarize([
        {"node_id": 0, "host": "a", "port": 1, "status": "down", "role": "replica"},
        {"node_id": 1, "host": "b", "port": 1, "status": "up", "role": "replica"},
        {"node_id": 2, "host": "c", "port": 1, "status": "up", "role": "main"},
    ])
    assert st["degenerated"] is True and st["newest"] == "c"


@pytest.mark.parametrize("bad, message", [
    (None, "gave nothing"),
    ("", "empty"),
    ("psql: error: connection to server failed", "no SHOW pool_nodes row"),
    ("0|db01|5432|up", "has 4 columns"),
    ([], "returned no row"),
    ([("0", "db01")], "has 2 columns"),
    ([{"hostname": "db01"}], "lacks node_id"),
    ("0|db01|x5432|up|up|0.5|main|main|0|false|0|||t", "port is not a number"),
])
def test_pool_nodes_malformed(bad, message):
    with pytest.raises(ValueError, match=message):
        pool.parse_pool_nodes(bad)


# --------------------------------------------------------------------------- pcp_node_info


def test_pcp_node_info_terse_and_verbose():
    st = pool.parse_pcp_node_info(read(LAB / "pcp_node_info.txt"))
    assert view(st) == [(0, "db01", 5432, "up", "main"), (1, "db02", 5432, "up", "replica")]
    assert [b["status_code"] for b in st["backends"]] == ["2", "2"]
    assert st["backends"][1]["pg_status"] == "up"
    assert st["backends"][1]["last_status_change"] == "2026-11-25 16:46:59"
    assert st["backends"][0]["last_status_change"] == "2026-11-25 16:46:59"
    assert st["replicating"] is True and st["main"] == "db01"


def test_pcp_node_info_detached_node_from_trace():
    text = read(LAB / "pcp_detach_attach.txt")
    lines = text.splitlines()
    i = lines.index("db02 5432 3 0.500000 down up replica replica 0 none none 2026-11-25 16:47:11")
    st = pool.parse_pcp_node_info("\n".join(lines[i - 1:i + 1]))
    [b] = st["backends"]
    assert (b["node_id"], b["host"], b["status"], b["status_code"], b["pg_status"]) == \
        (1, "db02", "down", "3", "up")


def test_pcp_node_info_node_id_argument_and_3x_format():
    st = pool.parse_pcp_node_info("db01 5432 3 0.500000\n", node_id=0)
    [b] = st["backends"]
    assert (b["node_id"], b["host"], b["port"], b["status"], b["pool_status"]) == \
        (0, "db01", 5432, "down", "down")
    st = pool.parse_pcp_node_info("db01 5432 1 0.500000\ndb02 5432 2 0.500000\n")
    assert [(b["node_id"], b["status"], b["pool_status"]) for b in st["backends"]] == \
        [(0, "up", "waiting"), (1, "up", "up")]


@pytest.mark.parametrize("bad, message", [
    ("", "empty"),
    ("ERROR: connection to socket \"/tmp/.s.PGSQL.9898\" failed", "pcp_node_info failed"),
    ("hello world", "no pcp_node_info record"),
])
def test_pcp_node_info_malformed(bad, message):
    with pytest.raises(ValueError, match=message):
        pool.parse_pcp_node_info(bad)


# --------------------------------------------------------------------------- show pool_status


@pytest.mark.parametrize("name", ["show_pool_status_degenerated.txt",
                                  "show_pool_status_switched.txt"])
def test_pool_status_2008_degenerated(name):
    st = pool.parse_pool_status_legacy(read(RUNBOOK / name))
    assert view(st) == [(0, "db01", 5432, "down", "master"), (1, "db02", 5432, "up", "secondary")]
    assert st["replication_enabled"] is False
    assert st["degenerated"] is True and st["replicating"] is False
    # the manual's bold warning: current_backend_host_name names the resync source
    assert st["current_backend"] == "db02"
    assert st["newest"] == "db02"
    assert pool.newest_backend(st) == "db02"
    assert st["items"]["server_status"] == \
        "master(DB01 on 5432) down secondary(DB02 on 5432) up"
    assert st["items"]["health_check_user"] == "apadmin"
    assert st["backends"][0]["weight"] == 0.5


@pytest.mark.parametrize("name", ["show_pool_status_resynced.txt",
                                  "show_pool_status_example.txt"])
def test_pool_status_2008_replicating(name):
    st = pool.parse_pool_status_legacy(read(RUNBOOK / name))
    assert view(st) == [(0, "db01", 5432, "up", "master"), (1, "db02", 5432, "up", "secondary")]
    assert st["replication_enabled"] is True
    assert st["degenerated"] is False and st["replicating"] is True
    assert st["newest"] is None
    assert st["main"] == "db01"


def test_pool_status_2008_has_41_items_like_the_manual_says():
    items = pool.parse_pool_status_items(read(RUNBOOK / "show_pool_status_example.txt"))
    assert len(items) == 41
    assert items["reset_query_list"] == "ABORT; RESET ALL; SET SESSION AUTHORIZATION DEFAULT;"


def test_pool_status_2008_replication_disabled_with_both_up_is_degenerated():
    text = read(RUNBOOK / "show_pool_status_degenerated.txt").replace(
        "master(DB01 on 5432) down", "master(DB01 on 5432) up")
    st = pool.parse_pool_status_legacy(text)
    assert all(b["status"] == "up" for b in st["backends"])
    assert st["degenerated"] is True
    assert st["newest"] == "db02"


def test_pool_status_2008_current_backend_down_newest_is_the_one_up():
    text = read(RUNBOOK / "show_pool_status_degenerated.txt").replace(
        "current_backend_host_name\tDB02", "current_backend_host_name\tDB01")
    st = pool.parse_pool_status_legacy(text)
    assert st["current_backend"] == "db01"
    assert st["newest"] == "db02"


def test_pool_status_4x_backend_rows():
    st = pool.parse_pool_status_legacy(read(LAB / "show_pool_status.txt"))
    assert view(st) == [(0, "db01", 5432, "up", None), (1, "db02", 5432, "up", None)]
    assert st["replication_enabled"] is None
    assert st["degenerated"] is False and st["newest"] is None
    assert st["items"]["port"] == "9999"
    assert st["items"]["backend_clustering_mode"] == "2"
    assert len(st["items"]) == 152
    assert st["items"]["delegate_IP"] == ""
    # psql's "+" (value continues on the next line) is not part of the value
    assert st["items"]["memqcache_stats_start_time"] == "Wed Nov 25 16:46:58 2026"


def test_pool_status_4x_backend_down():
    text = read(LAB / "show_pool_status.txt").replace(
        " backend_status1                       | up      ",
        " backend_status1                       | down    ")
    st = pool.parse_pool_status_legacy(text)
    assert [b["status"] for b in st["backends"]] == ["up", "down"]
    assert st["newest"] == "db01"


@pytest.mark.parametrize("bad, message", [
    ("", "empty"),
    ("ERROR:  unrecognized configuration parameter \"pool_status\"", "no show pool_status row"),
    ("item|value\nport|9999\n", "names no backend"),
    ("server_status|master(DB01) weird\n", "cannot read server_status"),
    ("backend_host_name\tDB01\nport\t9999\n", "no server_status row"),
])
def test_pool_status_malformed(bad, message):
    with pytest.raises(ValueError, match=message):
        pool.parse_pool_status_legacy(bad)
