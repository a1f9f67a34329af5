"""hatasks.pool on real pgpool outputs: the lab's pgpool-II 4.3.5 SHOW pool_nodes, as psql
prints it and as psycopg2 returns it."""

import pathlib

import pytest

from hatasks import pool

FIX = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
LAB = FIX / "lab-samples"


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
    assert st["newest"] is None


def test_pool_nodes_detached_backend_is_down_newest_is_the_other():
    [detached, attached] = paragraphs(LAB / "pcp_detach_attach.txt", "node_id | hostname")
    st = pool.parse_pool_nodes(detached)
    assert view(st) == [(0, "db01", 5432, "up", "main"), (1, "db02", 5432, "down", "replica")]
    # pgpool detached db02 but its PostgreSQL still runs
    assert st["backends"][1]["pg_status"] == "up"
    assert st["degenerated"] is True and st["replicating"] is False
    assert st["newest"] == "db01"
    assert st["newest"] == "db01"
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
    assert st["newest"] is None


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
