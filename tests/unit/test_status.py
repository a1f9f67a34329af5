"""status: the verdict logic on real captures, that the collectors are run in parallel, and the
whole task on the shared FakeRemote answering as the lab does."""

import json
import threading
import time

import invoke
import pytest

from hatasks import crm, crmmon, inventory, status
from hatasks.errors import HaError

from conftest import FIXTURES as FIX, ROOT, psql_rows


def db_cluster():
    return inventory.load(str(ROOT / "hosts.ini")).cluster("db")


def xml(name):
    return crmmon.parse_crm_mon_xml((FIX / "captures" / "pacemaker" / name).read_text())


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
    assert set(data["clusters"]["db"]) == {"kind", "hosts", "hb", "pgpool", "pg"}

    running[0] = peak[0] = 0
    status.collect(object(), parallel=False)
    assert peak[0] == 1


def lab_answers(fake, db_crm_mon):
    """crm_mon of both clusters, SHOW pool_nodes and each backend's own PostgreSQL, as the lab
    answers them."""
    lb = (FIX / "lab-samples" / "crm_mon-1_xml_lb.xml").read_text()
    fake.on(lambda host, cmd: cmd == crm.CRM_MON,
            lambda host, cmd: (0, lb if host.startswith("lb") else db_crm_mon))
    fake.sql("SHOW pool_nodes", psql_rows((FIX / "lab-samples" / "show_pool_nodes.txt")
                                          .read_text()))
    fake.sql("current_setting('server_version')", [("15.18 (Debian 15.18-0+deb12u1)", 150018,
                                                    5432)])
    fake.sql("pg_database_size", [("GYOM_DB", 7700000), ("postgres", 7500000)])
    fake.on("cibadmin --query --scope constraints", (0, "<constraints/>"))


def test_status_task_on_a_healthy_lab(ctx, fake, capsys):
    lab_answers(fake, (FIX / "lab-samples" / "crm_mon-1_xml_db_initial.xml").read_text())
    status.status(ctx, format="json")
    data = json.loads(capsys.readouterr().out)
    assert data["healthy"] is True and data["problems"] == []
    assert data["clusters"]["db"]["pgpool"]["degenerated"] is False
    assert [b["version"] for b in data["clusters"]["db"]["pg"]["backends"]] == \
        ["15.18 (Debian 15.18-0+deb12u1)"] * 2
    assert sorted({c.host for c in fake.calls}) == ["db01", "lb01"]


def test_status_task_names_the_failed_action_and_exits_3(ctx, fake, capsys):
    lab_answers(fake, (FIX / "lab-samples" / "crm_mon-1_xml_pgpool_killed.xml").read_text())
    with pytest.raises(invoke.Exit) as exc:
        status.status(ctx, format="table")
    assert exc.value.code == HaError.STATE
    out, err = capsys.readouterr()
    assert "FAILED ACTIONS" in out and "PROBLEMS:" in out
    assert "failed action: pgpool monitor on db02" in err


BAN = """<constraints><rsc_location id="cli-ban-grp-pgpool-on-db01" rsc="grp-pgpool" role="Started"
 node="db01" score="-INFINITY"/></constraints>"""


def test_status_names_a_constraint_left_by_a_ban(ctx, fake, capsys):
    lab_answers(fake, (FIX / "lab-samples" / "crm_mon-1_xml_db_initial.xml").read_text())
    fake.on("cibadmin --query --scope constraints", (0, BAN))
    with pytest.raises(invoke.Exit) as exc:
        status.status(ctx, format="json")
    assert exc.value.code == HaError.STATE
    data = json.loads(capsys.readouterr().out)
    assert any("cli-ban-grp-pgpool-on-db01" in p and "hb.clear --resource grp-pgpool" in p
               for p in data["problems"]), data["problems"]


def test_status_unreachable_host_exits_4_naming_it(ctx, fake, capsys):
    lab_answers(fake, (FIX / "lab-samples" / "crm_mon-1_xml_db_initial.xml").read_text())
    fake.down.add("db02")
    with pytest.raises(invoke.Exit) as exc:
        status.status(ctx, format="json")
    assert exc.value.code == HaError.UNREACHABLE
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert "db02" in data["unreachable"] and "db02" in err
    # the dead host does not hide the other backend
    assert {b["host"]: b["status"] for b in data["clusters"]["db"]["pg"]["backends"]} == \
        {"db01": "up", "db02": "down"}


def test_host_key_problem_is_not_a_service_down():
    entry = {"hosts": {"db01": {"ok": True},
                       "db02": {"error": "db02 (10.0.0.2:22) unreachable: host key does not "
                                         "match known_hosts (possible impersonation)"}},
             "hb": xml("initial.xml"), "pgpool": healthy_pool(),
             "pg": {"backends": [{"host": "db01", "status": "up"},
                                 {"host": "db02", "status": "down", "reason": "host key"}]}}
    found = status.problems(db_cluster(), entry)
    assert any(p.startswith("db02 HOST KEY problem, not a service failure") for p in found)
    assert not any("PostgreSQL on db02 is down" in p for p in found)
