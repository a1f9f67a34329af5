"""status: the verdict logic on real captures, and that the collectors are run in parallel."""

import pathlib
import threading
import time

from hatasks import cluster as crm
from hatasks import inventory, status

FIX = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
ROOT = pathlib.Path(__file__).resolve().parents[2]


def db_cluster():
    return inventory.load(str(ROOT / "hosts.ini")).cluster("db")


def xml(name):
    return crm.parse_crm_mon_xml((FIX / "captures" / "pacemaker" / name).read_text())


def healthy_pool():
    return {"reachable": True, "degenerated": False, "newest": None,
            "backends": [{"host": "db01", "status": "up"}, {"host": "db02", "status": "up"}]}


def healthy_pg():
    return {"backends": [{"host": "db01", "status": "up"}, {"host": "db02", "status": "up"}]}


def test_healthy_cluster_has_no_problems():
    entry = {"hb": xml("initial.xml"), "pgpool": healthy_pool(), "pg": healthy_pg()}
    assert status.problems(db_cluster(), entry) == []


def test_offline_node_and_failed_start_are_problems():
    entry = {"hb": xml("start_failed_moved_to_db02.xml"), "pgpool": healthy_pool(),
             "pg": healthy_pg()}
    found = status.problems(db_cluster(), entry)
    assert any("failed action" in p and "start" in p for p in found), found
    entry = {"hb": xml("db01_down.xml"), "pgpool": healthy_pool(), "pg": healthy_pg()}
    assert "node db01 is offline" in status.problems(db_cluster(), entry)


def test_degenerated_pgpool_names_the_newest_backend():
    pool = {"reachable": True, "degenerated": True, "newest": "db01",
            "backends": [{"host": "db01", "status": "up"}, {"host": "db02", "status": "down"}]}
    found = status.problems(db_cluster(), {"hb": xml("initial.xml"), "pgpool": pool,
                                           "pg": healthy_pg()})
    assert found == ["pgpool degenerated: backend db02 down, newest data on db01 (resync needed)"]


def test_unreachable_parts_are_problems():
    entry = {"hb": {"error": "cluster db: no node answered"},
             "pgpool": {"reachable": False, "error": "pgpool does not answer"},
             "pg": {"backends": [{"host": "db01", "status": "up"},
                                 {"host": "db02", "status": "down", "reason": "refused"}]}}
    found = status.problems(db_cluster(), entry)
    assert found == [
        "Pacemaker: cluster db: no node answered",
        "pgpool does not answer: pgpool does not answer; no newest-data record",
        "PostgreSQL on db02 is down: refused",
    ]
    entry["pgpool"]["recorded"] = {"newest": "db01", "ts": "2026-11-25T03:00:00Z"}
    assert ("pgpool does not answer: pgpool does not answer; last newest-data record: db01 at "
            "2026-11-25T03:00:00Z") in status.problems(db_cluster(), entry)


def test_collect_runs_the_probes_in_parallel(mocker):
    """Four probes that each take 0.3 s and record overlap: all run at once."""
    running, peak, lock = [0], [0], threading.Lock()

    def slow(value):
        def fn():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.3)
            with lock:
                running[0] -= 1
            return value
        return fn

    jobs = [(("db", "hb"), slow(xml("initial.xml"))), (("db", "pgpool"), slow(healthy_pool())),
            (("db", "pg"), slow(healthy_pg())), (("lb", "hb"), slow(xml("initial.xml")))]
    mocker.patch.object(status, "collectors", return_value=(["db"], jobs))
    inv = inventory.load(str(ROOT / "hosts.ini"))
    mocker.patch.object(status.remote, "inventory", return_value=inv)
    data = status.collect(object())
    assert peak[0] == 4
    assert data["healthy"] is True
    assert set(data["clusters"]["db"]) == {"kind", "hb", "pgpool", "pg"}

    running[0] = peak[0] = 0
    status.collect(object(), parallel=False)
    assert peak[0] == 1
