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


# --------------------------------------------------------------------------- reads made ahead


def test_a_read_made_ahead_is_served_once_then_the_host_is_asked(ctx, fake):
    from hatasks import remote

    fake.on("crm_mon", (0, "from the host"))
    fill = remote.read_ahead(ctx, "db01", ["crm_mon -1", "cibadmin -Q"])
    fill("crm_mon -1", invoke.Result(stdout="read ahead", exited=0))
    fill("cibadmin -Q", None)  # not read: its reader asks
    fake.on("cibadmin -Q", (0, "<cib/>"))
    try:
        assert remote.run(ctx, "db01", "crm_mon -1", probe=True).stdout == "read ahead"
        assert fake.calls == []
        assert remote.run(ctx, "db01", "crm_mon -1", probe=True).stdout == "from the host"
        assert remote.run(ctx, "db02", "crm_mon -1", probe=True).stdout == "from the host"
        assert remote.run(ctx, "db01", "cibadmin -Q", probe=True).stdout == "<cib/>"
    finally:
        remote.drop_ahead()
    assert [c.host for c in fake.calls] == ["db01", "db02", "db01"]


def test_a_change_voids_every_read_made_ahead(ctx, fake):
    from hatasks import remote

    fake.on("crm_mon", (0, "from the host")).on("crm_standby", (0, ""))
    fill = remote.read_ahead(ctx, "db01", ["crm_mon -1"])
    fill("crm_mon -1", invoke.Result(stdout="read ahead", exited=0))
    remote.run(ctx, "db01", "crm_standby -N db02 -v on")  # not a probe: may change the answer
    assert remote.run(ctx, "db01", "crm_mon -1", probe=True).stdout == "from the host"


def test_a_reader_waits_for_the_read_announced_and_a_failed_exit_still_raises(ctx, fake):
    from hatasks import remote

    fill = remote.read_ahead(ctx, "db01", ["crm_mon -1", "false"])
    got = {}
    reader = threading.Thread(target=lambda: got.update(
        out=remote.run(ctx, "db01", "crm_mon -1", probe=True).stdout))
    reader.start()
    fill("crm_mon -1", invoke.Result(stdout="read ahead", exited=0))
    fill("false", invoke.Result(stdout="", stderr="no", exited=1))
    reader.join(10)
    assert got == {"out": "read ahead"} and fake.calls == []
    with pytest.raises(remote.CommandFailed):
        remote.run(ctx, "db01", "false", probe=True)


def cluster_state_answers(fake):
    """The lock (free) and the newest-data record (none) in the CIB and the hosts' files."""
    from hatasks import lock

    fake.on(lambda host, cmd: "cibadmin --query --xpath" in cmd and "now=" in cmd,
            (0, f"rc={lock.CIB_NO_MATCH}\nnow=1700000000\n"))
    fake.on(lambda host, cmd: "op=show" in cmd, (0, "state=free\nnow=1700000000\n"))
    fake.on("echo '--file'", (0, "--file\n\n--cib\n\n--rc=6\n"))


def test_status_asks_each_read_once_all_at_once_with_the_cluster_state_on(tmp_path, fake):
    """Every ssh read of status (crm_mon, constraints, the lock in the CIB and in each host's
    file, each host's newest-data record) is asked once, by the host's first job."""
    from conftest import make_ctx
    from hatasks import lock

    ctx = make_ctx(tmp_path, cluster_state=True)
    lab_answers(fake, (FIX / "lab-samples" / "crm_mon-1_xml_db_initial.xml").read_text())
    cluster_state_answers(fake)
    data = status.collect(ctx)
    assert data["healthy"] is True, data["problems"]
    sent = [(c.host, c.command) for c in fake.calls]
    assert len(sent) == len(set(sent)), sent
    assert ("db02", lock.newest_read_command(ctx, "db")) in sent
    assert ("lb02", lock.host_command(ctx, "lb", "show")) in sent


def test_reads_are_announced_before_any_job_starts(tmp_path, fake, mocker):
    """The readers (here: the lock's) never ask a host before its reads are announced, even
    when their job starts first: they wait for the read made ahead."""
    from conftest import make_ctx

    ctx = make_ctx(tmp_path, cluster_state=True)
    lab_answers(fake, (FIX / "lab-samples" / "crm_mon-1_xml_db_initial.xml").read_text())
    cluster_state_answers(fake)
    release = threading.Event()
    real = status.HostReads.__call__

    def late(self):  # every ssh job starts after the others have asked
        release.wait(1)
        return real(self)

    mocker.patch.object(status.HostReads, "__call__", late)
    data = status.collect(ctx)
    assert data["healthy"] is True, data["problems"]
    sent = [(c.host, c.command) for c in fake.calls]
    assert len(sent) == len(set(sent)), sent


def test_a_host_that_does_not_answer_fails_its_readers_without_a_second_connect(tmp_path, fake,
                                                                               mocker):
    """db02 does not answer: its reads made ahead give their readers the same error, so no
    reader waits for another connect timeout; db01 is read as usual."""
    from conftest import make_ctx
    from hatasks import remote

    ctx = make_ctx(tmp_path, cluster_state=True)
    lab_answers(fake, (FIX / "lab-samples" / "crm_mon-1_xml_db_initial.xml").read_text())
    cluster_state_answers(fake)
    fake.down.add("db02")
    tries = []
    real = remote.connection
    mocker.patch.object(remote, "connection", lambda ctx, host: (
        tries.append(getattr(host, "name", host)), real(ctx, host))[1])
    data = status.collect(ctx, "db")
    assert "db02" in data["unreachable"]
    assert data["clusters"]["db"]["hb"]["read_on"] == "db01"
    # db02: the ssh job's connect, and the backend's own (a tunnel, not a read made ahead)
    assert tries.count("db02") == 2, tries
