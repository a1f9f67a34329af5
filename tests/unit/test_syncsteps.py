"""syncsteps: the explicit step table, the recovery scripts and their installation (the
commands sent to the hosts, captured through a fake remote.run)."""

import base64
import inspect
import pathlib
import shlex
import subprocess

import pytest
from invoke import Config, MockContext, Result

from hatasks import remote, syncio, syncplan, syncrescue, syncsteps
from hatasks.errors import HaError

ROOT = pathlib.Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- recovery scripts


def test_recovery_scripts_are_valid_bash_with_paths_filled_in(tmp_path):
    for name in syncplan.RECOVERY_SCRIPTS:
        text = syncsteps.recovery_script_text(name, "/usr/lib/postgresql/15/bin")
        assert "@PGBIN@" not in text and "@LOG@" not in text and "@PGPORT@" not in text
        assert syncplan.RECOVERY_MARK in text
        f = tmp_path / name
        f.write_text(text)
        subprocess.run(["bash", "-n", str(f)], check=True)
    first = syncsteps.recovery_script_text("recovery_1st_stage", "/b")
    assert 'mv -T -- "$PGDATA" "$KEPT"' in first and "rm -rf" not in first


def test_install_recovery_sends_each_script_base64(tmp_path, monkeypatch):
    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    calls = []

    def fake_run(ctx, host, command, *, user="root", probe=False, **kw):
        calls.append((getattr(host, "name", host), user, command))
        if "grep -E" in command:
            return Result(stdout="recovery_1st_stage_command = 'first'\n", exited=0)
        return Result(stdout="installed\n", exited=0)

    monkeypatch.setattr(remote, "run", fake_run)
    out = syncsteps.install_recovery(ctx, ["db01"])
    assert out == {"db01": ["first", "recovery_2nd_stage", "pgpool_remote_start"]}
    installs = [c for c in calls if "base64 -d" in c[2]]
    assert [c[1] for c in installs] == ["postgres"] * 3
    assert installs[0][2].startswith("t=/var/lib/postgresql/15/data/first; printf %s ")
    b64 = shlex.split(installs[0][2].split("; ", 1)[1])[2]
    assert base64.b64decode(b64).decode() == syncsteps.recovery_script_text(
        "recovery_1st_stage", "/usr/lib/postgresql/15/bin")


def test_steps_table_runs_every_step_of_every_method():
    """Every step a plan can name has a function, and the table holds nothing else."""
    planned = {s for steps in syncplan.METHOD_STEPS.values() for s in steps}
    assert set(syncsteps.STEPS) == planned
    assert {s for group in syncplan.REBUILD.values() for s in group} <= planned
    for name, fn in syncsteps.STEPS.items():
        assert fn.__module__ == "hatasks.syncsteps", name
        assert list(inspect.signature(fn).parameters) == ["ctx", "p", "st"], name


# --------------------------------------------------------------------------- progress measures, physical proof


def test_read_position_command_reports_how_far_a_reader_is(tmp_path):
    """Run for real on this machine: a process reading a file, the command finds its offset."""
    f = tmp_path / "dump.sql"
    f.write_bytes(b"x" * 10000)
    reader = subprocess.Popen(["python3", "-c", f"import sys, time; fh = open({str(f)!r}, 'rb', buffering=0); "
                               "fh.read(4321); print('ready', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "ready"
        out = subprocess.run(["bash", "-c", syncplan.read_position_command(str(f))],
                             capture_output=True, text=True)
        assert out.stdout.strip() == "4321"
    finally:
        reader.kill()
        reader.wait()
    # nobody has it open: nothing printed (no progress drawn), exit 0
    out = subprocess.run(["bash", "-c", syncplan.read_position_command(str(f))],
                         capture_output=True, text=True)
    assert out.stdout == "" and out.returncode == 0


def test_manifest_end_lsn_command_reads_the_last_wal_range(tmp_path):
    (tmp_path / "backup_manifest").write_text(
        '{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [],\n"WAL-Ranges": [\n'
        '{ "Timeline": 1, "Start-LSN": "0/4F000028", "End-LSN": "0/4F000138" }\n],\n'
        '"Manifest-Checksum": "e9"}\n')
    out = subprocess.run(["bash", "-c", syncplan.manifest_end_lsn_command(str(tmp_path))],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "0/4F000138"


def _proof_env(monkeypatch, tmp_path, sysids=("7", "7"), dbs=(["a", "b"], ["a", "b"]),
               src_lsn="0/500", quiet=(True, "only checkpoints")):
    from hatasks import compare

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    pos = {"db01": {"sysid": sysids[0], "lsn": src_lsn}, "db02": {"sysid": sysids[1], "lsn": "0/400"}}
    names = {"db01": dbs[0], "db02": dbs[1]}
    monkeypatch.setattr(syncsteps, "position", lambda ctx, n, port: pos[n])
    monkeypatch.setattr(remote, "sql_rows", lambda ctx, h, query, *a, **kw: [
        {"datname": d} for d in names[h.name]])
    asked = []
    monkeypatch.setattr(compare, "wal_quiet", lambda ctx, h, a, b: asked.append((a, b)) or quiet)
    s, t = remote.host(ctx, "db01"), remote.host(ctx, "db02")
    p = {"maint_port": 1234}
    return ctx, p, s, t, asked


def test_physical_proof_when_same_system_same_databases_and_a_quiet_source(monkeypatch, tmp_path):
    ctx, p, s, t, asked = _proof_env(monkeypatch, tmp_path)
    st = {"manifest_verified": True, "backup_end_lsn": "0/400"}
    out = syncsteps.physical_proof(ctx, p, st, s, t)
    assert out["verified"] == "physical" and out["verified_databases"] == 2
    assert asked == [("0/400", "0/500")]


def test_physical_proof_gives_way_to_the_table_scan(monkeypatch, tmp_path):
    st = {"manifest_verified": True, "backup_end_lsn": "0/400"}
    for kw in ({"sysids": ("7", "8")}, {"dbs": (["a", "b"], ["a"])},
               {"quiet": (False, "a record that may write: Heap INSERT")}):
        ctx, p, s, t, _ = _proof_env(monkeypatch, tmp_path, **kw)
        assert syncsteps.physical_proof(ctx, p, st, s, t) is None, kw
    ctx, p, s, t, _ = _proof_env(monkeypatch, tmp_path)
    assert syncsteps.physical_proof(ctx, p, {"backup_end_lsn": "0/400"}, s, t) is None  # not verified
    assert syncsteps.physical_proof(ctx, p, {"manifest_verified": True}, s, t) is None  # no end LSN


def _basebackup_run(monkeypatch, tmp_path, verify, kept):
    """The basebackup step on a fake remote.run: every command answers exit 0, the one running
    pg_verifybackup answers VERIFY. Returns (ctx, the commands sent, the plan params)."""
    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    calls = []

    def fake_run(ctx, host, command, *, user="root", probe=False, **kw):
        calls.append(command)
        return verify if "pg_verifybackup" in command else Result(stdout="", exited=0)

    monkeypatch.setattr(remote, "run", fake_run)
    monkeypatch.setattr(syncsteps, "ensure_running", lambda *a: None)
    monkeypatch.setattr(syncsteps, "_clear_new_datadir", lambda *a: None)
    p = {"target": "db02", "source": "db01", "maint_port": 1234, "op": "op-1",
         "pgdata": "/var/lib/postgresql/15/data", "kept": kept, "settings": {"superuser": "postgres"}}
    return ctx, calls, p


def test_basebackup_marks_the_copy_ours_then_refuses_one_the_manifest_rejects(monkeypatch, tmp_path):
    import pytest

    from hatasks.errors import StateError

    verify = Result(stdout="", stderr='pg_verifybackup: error: "base/5/16390" has size 0 '
                    "on disk but size 8192 in the manifest", exited=1)
    ctx, calls, p = _basebackup_run(monkeypatch, tmp_path, verify,
                                    "/var/lib/postgresql/15/data.2026-11-30-214101")
    with pytest.raises(StateError) as exc:
        syncsteps.basebackup_target(ctx, p, {})
    assert "pg_verifybackup rejects the copy" in exc.value.message
    assert "kept as /var/lib/postgresql/15/data.2026-11-30-214101" in exc.value.message
    order = [i for i, c in enumerate(calls) for w in ("pg_basebackup ", "> /var/lib/postgresql/15/data/"
                                                      ".hatasks-resync", "pg_verifybackup") if w in c]
    assert order == sorted(order) and len(order) == 3
    assert "-i .hatasks-resync /var/lib/postgresql/15/data" in [c for c in calls if "pg_verifybackup" in c][0]


def test_dump_step_skips_the_safety_dump_only_for_a_clean_target(monkeypatch):
    ran = []
    monkeypatch.setattr(syncsteps, "dump_source", lambda ctx, p: ran.append("source") or {"dump": "/d"})
    monkeypatch.setattr(syncsteps, "safety_dump", lambda ctx, p: ran.append("target") or {"safety_dump": "/s"})
    p = {"source": "db01", "target": "db02", "kept": "/k", "proof": {"clean": True, "how": "same WAL"}}
    assert syncsteps.dump_source_and_target(None, p, {}) == {"dump": "/d", "safety_dump": None}
    assert ran == ["source"]
    ran.clear()
    out = syncsteps.dump_source_and_target(None, dict(p, proof={"clean": None}), {})
    assert out == {"dump": "/d", "safety_dump": "/s"} and sorted(ran) == ["source", "target"]


def test_online_copy_that_differs_is_detached_and_the_error_says_so(monkeypatch, tmp_path):
    """A failed verify of an online copy (pgpool attached it) detaches the target, so the copy
    proved different serves no client, and the error tells that sync.resume copies again."""
    import pytest

    from hatasks import pgpool
    from hatasks.errors import HaError

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))

    def differ(ctx, p, ports, attempts=1):
        assert attempts > 1
        raise HaError("verification failed: chaos_writes: db01=10, db02=9", HaError.NOT_CONVERGED)

    detached = []
    monkeypatch.setattr(syncsteps, "verify", differ)
    monkeypatch.setattr(pgpool, "detach", lambda ctx, h, nid, **kw: detached.append((h.name, nid, kw)))
    p = {"method": "online", "source": "db01", "target": "db02", "cluster": None}
    with pytest.raises(HaError) as e:
        syncsteps.verify_copy(ctx, p, {})
    assert detached == [("db02", remote.host(ctx, "db02").pgpool_node_id,
                         {"reason": "sync.resync online: copy differs", "position": False})]
    assert e.value.code == HaError.NOT_CONVERGED
    assert "db02 detached from pgpool" in e.value.message and "sync.resume copies it again" in e.value.message

    def refuse(ctx, h, nid, **kw):
        raise HaError("refusing to detach db02 (node 1): it is the last backend up")

    monkeypatch.setattr(pgpool, "detach", refuse)
    with pytest.raises(HaError) as e:
        syncsteps.verify_copy(ctx, p, {})
    assert "could NOT be detached" in e.value.message and "last backend up" in e.value.message


def test_start_pgpool_restarts_a_pgpool_serving_nobody_and_leaves_a_live_one(monkeypatch, tmp_path):
    """Chaos seed 31 step 5: pgpool's config broke on db01 during a resync; Pacemaker started
    pgpool on db02 while both backends were stopped or on the maintenance port: it accepted no
    connection ever after, and the resume failed at the attach step every time."""
    from hatasks import backends, pgpool
    from hatasks.errors import UnreachableError

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    did = []
    monkeypatch.setattr(pgpool, "stop", lambda ctx, h, **kw: did.append(("stop", h)))
    monkeypatch.setattr(pgpool, "start", lambda ctx, h, **kw: did.append(("start", h)))
    monkeypatch.setattr(pgpool, "maintenance_set", lambda *a: True)
    monkeypatch.setattr(pgpool, "write_status_file", lambda ctx, c, h, words: did.append(("status", h, words)))
    monkeypatch.setattr(syncsteps, "pool_host", lambda ctx, c: "db02")

    def nobody(ctx, cluster):
        raise UnreachableError("pgpool does not answer on 10.0.0.10:9999 (db01: ... ERROR:  pgpool "
                               "is not accepting any new connections)")

    monkeypatch.setattr(backends, "read_pool_nodes", nobody)
    p = {"cluster": None, "pgpool_host": "db01"}
    assert syncsteps.start_pgpool(ctx, p, {}) == {"pgpool_restarted": "db02"}
    assert did[0] == ("stop", "db02") and did[-1] == ("start", "db02")
    assert [d[2] for d in did if d[0] == "status"] == [["up", "up"]] * 2
    # pgpool answering (or not answering for another reason): left alone
    did.clear()
    monkeypatch.setattr(backends, "read_pool_nodes", lambda ctx, cluster: {"backends": []})
    assert syncsteps.start_pgpool(ctx, p, {}) == {} and did == []
    monkeypatch.setattr(backends, "read_pool_nodes", lambda ctx, cluster: (_ for _ in ()).throw(
        UnreachableError("pgpool does not answer on 10.0.0.10:9999 (connection refused)")))
    assert syncsteps.start_pgpool(ctx, p, {}) == {} and did == []


def test_start_pgpool_starts_it_where_the_group_is_now(monkeypatch, tmp_path):
    """Chaos seed 41 step 7 (pass 2): the resync stopped pgpool on db01, db01 lost power, the
    group's VIP moved to db02; the resume's start step named db01 and pgpool.start refused
    ("the group of pgpool (VIP) is on db02"): exit 3 and a hand repair."""
    from hatasks import pgpool

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    started = []
    monkeypatch.setattr(pgpool, "start", lambda ctx, h, **kw: started.append(h))
    monkeypatch.setattr(pgpool, "maintenance_set", lambda *a: True)
    monkeypatch.setattr(pgpool, "write_status_file", lambda *a: True)
    monkeypatch.setattr(pgpool, "vip_node", lambda ctx, c: "db02")
    syncsteps.start_pgpool(ctx, {"cluster": None, "pgpool_host": "db01"},
                           {"pgpool_stopped": True, "pgpool_host": "db01"})
    assert started == ["db02"]


def test_stop_pgpool_proves_the_target_again_when_pgpool_wrote_to_it_alone(monkeypatch, tmp_path):
    """Chaos seed 41 step 34: pgpool wrote to db01 alone; the operator chose db02 as the
    source; the proof before the plan found nothing, and the 14 writes acknowledged between it
    and the stop of pgpool left the cluster with the rebuilt db01. With pgpool stopped, the
    target is proved again (the chosen source: its extra writes go to a salvage file)."""
    from hatasks import salvage

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    order = []
    monkeypatch.setattr(syncsteps, "_stop_pgpool", lambda ctx, p, st: order.append("stop") or
                        {"pgpool_stopped": True, "pgpool_host": "db01"})

    def prove(ctx, cluster, target, source, force, chosen=False, what=""):
        order.append(("prove", target, source, force, chosen))
        return {"clean": False, "how": "1 table differs", "seconds": 0.1}

    monkeypatch.setattr(salvage, "prove_clean", prove)
    p = {"cluster": "db", "source": "db02", "target": "db01", "force": False, "chosen": True,
         "reprove": True}
    out = syncsteps.stop_pgpool(ctx, p, {})
    assert order == ["stop", ("prove", "db01", "db02", False, True)]
    assert out["reproof"] == {"clean": False, "how": "1 table differs", "seconds": 0.1}
    order.clear()
    assert "reproof" not in syncsteps.stop_pgpool(ctx, dict(p, reprove=False), {})
    assert order == ["stop"]


# --------------------------------------------------------------------------- the move to another port



def _running_on(port):
    return (0, f"rc=0\n4242\n/var/lib/postgresql/15/data\n1764560000\n{port}\n")


def _answers(listening):
    """SELECT 1 answered on the ports in LISTENING (a set the test changes), refused elsewhere."""
    def rows(q):
        if q.port in listening:
            return [{"one": 1}]
        return HaError(f"connection refused on {q.port}")
    return rows


def test_a_move_to_the_maintenance_port_is_one_round_trip_then_both_ports_checked(ctx, fake, capsys):
    listening = {5432}
    fake.on("status >/dev/null", _running_on(5432))

    def restart(host, cmd):
        listening.clear()
        listening.add(1234)
        return (0, "")

    fake.on("-m fast -w -t 60 stop && mkdir -p", restart)
    fake.sql("SELECT 1", _answers(listening))
    h = remote.host(ctx, "db01")
    syncio.ensure_running(ctx, h, 1234)
    pg_ctl = [c for c in fake.sent("db01") if "pg_ctl" in c and "status" not in c]
    assert len(pg_ctl) == 1 and "stop && mkdir -p /var/log/postgresql && " in pg_ctl[0]
    assert "-o '-p 1234'" in pg_ctl[0] and pg_ctl[0].endswith("-w -t 60 start")
    # checked as pg.stop and pg.start check: a connection on 1234, none left on 5432
    assert [q.port for q in fake.queries] == [1234, 5432]
    assert "accepts connections on port 1234 (none on 5432)" in capsys.readouterr().out


def test_a_move_whose_old_port_still_answers_is_not_converged(ctx, fake):
    listening = {5432, 1234}
    fake.on("status >/dev/null", _running_on(5432))
    fake.on("-m fast -w -t 60 stop && mkdir -p", (0, ""))
    fake.sql("SELECT 1", _answers(listening))
    with pytest.raises(HaError) as exc:
        syncio.ensure_running(ctx, remote.host(ctx, "db01"), 1234)
    assert exc.value.code == HaError.NOT_CONVERGED and "port 5432 still accepts" in exc.value.message


def test_a_move_whose_stop_failed_says_so(ctx, fake):
    fake.on("status >/dev/null", _running_on(5432))
    fake.on("-m fast -w -t 60 stop && mkdir -p", (1, "", "pg_ctl: server does not shut down"))
    fake.sql("SELECT 1", _answers({5432}))
    with pytest.raises(HaError) as exc:
        syncio.ensure_running(ctx, remote.host(ctx, "db01"), 1234)
    assert "still running on port 5432 after pg_ctl -m fast stop" in exc.value.message


def test_basebackup_reads_size_marks_verifies_and_reads_the_end_in_one_round_trip(monkeypatch, tmp_path):
    # the watchdog's newlines around the two figures
    verify = Result(stdout="size=52428800\n\n\nend=0/E000100\n", exited=0)
    ctx, calls, p = _basebackup_run(monkeypatch, tmp_path, verify, "/var/lib/postgresql/15/data.k")
    out = syncsteps.basebackup_target(ctx, p, {})
    assert out["manifest_verified"] is True and out["backup_end_lsn"] == "0/E000100"
    assert out["basebackup_figures"]["bytes"] == 52428800
    after = [c for c in calls if "pg_verifybackup" in c]
    assert len(after) == 1 and len(calls) == 2   # the copy, then everything after it at once
    c = after[0]
    assert c.index("> /var/lib/postgresql/15/data/.hatasks-resync &&") < c.index("pg_verifybackup")
    assert "[ $rc = 0 ] && echo \"end=" in c and c.endswith("exit $rc")


def _online_ctx(monkeypatch, tmp_path, did, target_running=True, target_connects=False,
                promoted=False):
    from hatasks import pg, pgpool

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    monkeypatch.setattr(syncrescue, "ensure_running",
                        lambda ctx, h, port: did.append(("ensure_running", h.name)))
    monkeypatch.setattr(pg, "server_state", lambda ctx, h: {"running": target_running, "port": 5432})
    monkeypatch.setattr(pg, "connectable", lambda ctx, h, port: target_connects)
    monkeypatch.setattr(syncrescue, "promoted_copy", lambda ctx, t, pgdata: promoted)
    monkeypatch.setattr(syncrescue, "pool_host", lambda ctx, c: "db02")
    monkeypatch.setattr(pgpool, "stop", lambda ctx, h, **kw: did.append(("stop", h)))
    monkeypatch.setattr(pgpool, "start", lambda ctx, h, **kw: did.append(("start", h)))
    monkeypatch.setattr(pgpool, "vip_node", lambda ctx, c: "db01")
    monkeypatch.setattr(pgpool, "wait_backend",
                        lambda ctx, c, nid, want, t: did.append(("wait", str(nid), want)))
    monkeypatch.setattr(pgpool, "write_status_file",
                        lambda ctx, c, h, words: did.append(("status", h, tuple(words))))
    return ctx


def test_online_resync_restarts_a_pgpool_serving_nobody_with_the_source_alone(monkeypatch, tmp_path):
    """Chaos seed 51 step 44: the online resync's source lost power while the target was
    detached (its copy a standby); Pacemaker restarted pgpool, which saw both backends down and
    accepted no connection; every resume failed at its first SHOW pool_nodes. The recovery step
    restarts pgpool where the VIP is with the source up and the target down; the target, a
    standby copy that cannot have been written, needs no proof."""
    from hatasks import backends, salvage

    did = []
    ctx = _online_ctx(monkeypatch, tmp_path, did, target_running=True, target_connects=False)
    monkeypatch.setattr(salvage, "prove_clean", lambda *a, **kw: did.append(("prove",)))
    c = backends.pgpool_cluster(ctx, None)
    src = next(h for h in c.hosts if h.name == "db01")
    p = {"cluster": None, "source": "db01", "target": "db02", "pgdata": "/d", "force": False}
    assert syncrescue.serve_source_alone(ctx, p, c) == "db01"
    order = sorted(c.hosts, key=lambda h: int(h.pgpool_node_id))
    words = tuple("up" if h.name == "db01" else "down" for h in order)
    assert did == [("ensure_running", "db01"), ("stop", "db02"),
                   ("status", "db01", words), ("status", "db02", words),
                   ("start", "db01"), ("wait", str(src.pgpool_node_id), "up")]


def test_online_resync_proves_a_writable_target_before_pgpool_serves_the_source_alone(
        monkeypatch, tmp_path):
    """A target that accepts connections (or holds the recovery's promoted copy) may have
    taken writes pgpool sent it alone: proved first; a refused proof leaves pgpool as it is."""
    from hatasks import backends, salvage
    from hatasks.errors import StateError

    for connects, promoted in ((True, False), (False, True)):
        did = []
        ctx = _online_ctx(monkeypatch, tmp_path, did, target_running=connects,
                          target_connects=connects, promoted=promoted)

        def refuse(ctx, cluster, target, source, force, chosen=False, what=""):
            did.append(("prove", target, source, force))
            raise StateError(f"split brain: refusing {what}")

        monkeypatch.setattr(salvage, "prove_clean", refuse)
        c = backends.pgpool_cluster(ctx, None)
        p = {"cluster": None, "source": "db01", "target": "db02", "pgdata": "/d", "force": False}
        with pytest.raises(StateError):
            syncrescue.serve_source_alone(ctx, p, c)
        assert did == [("ensure_running", "db01"), ("ensure_running", "db02"),
                       ("prove", "db02", "db01", False)]


def test_online_resume_stops_the_standby_copy_an_earlier_attempt_left(monkeypatch, tmp_path):
    """The earlier attempt's 1st stage left the target a running standby of the source: it
    keeps the slot active and the next 1st stage failed ("replication slot already exists").
    It is stopped and the freed slot dropped; a target that is no standby is left alone."""
    from hatasks import pg

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    did = []
    standby = {"v": True}
    monkeypatch.setattr(syncrescue, "probe", lambda ctx, h, cmd, user="postgres": Result(
        exited=0 if standby["v"] and "standby.signal" in cmd else 1))
    monkeypatch.setattr(pg, "server_state", lambda ctx, h: {"running": True, "port": 5432})
    monkeypatch.setattr(pg, "stop", lambda ctx, h, mode: did.append(("pg.stop", h.name, mode)))

    def sql(ctx, h, query, args=(), port=None):
        did.append(("sql", h.name, query.split()[1]))
        return [{"n": 1}] if "NOT active" in query else []

    monkeypatch.setattr(remote, "sql_rows", sql)
    p = {"source": "db01", "target": "db02", "pgdata": "/d"}
    t = remote.host(ctx, "db02")
    assert syncrescue.stop_standby_copy(ctx, p, t) is True
    assert did == [("pg.stop", "db02", "fast"), ("sql", "db01", "count(*)"),
                   ("sql", "db01", "pg_drop_replication_slot(%s)")]
    did.clear()
    standby["v"] = False
    assert syncrescue.stop_standby_copy(ctx, p, t) is False and did == []


def test_promoted_copy_reads_the_recovery_files_of_the_data_directory(monkeypatch, tmp_path):
    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    sent = []
    monkeypatch.setattr(syncrescue, "probe", lambda ctx, h, cmd, user="postgres": sent.append(cmd)
                        or Result(stdout="promoted\n" if len(sent) == 1 else "", exited=0))
    t = remote.host(ctx, "db02")
    assert syncrescue.promoted_copy(ctx, t, "/d/data") is True
    assert syncrescue.promoted_copy(ctx, t, "/d/data") is False
    assert sent[0] == ("test -f /d/data/PG_VERSION && test ! -e /d/data/standby.signal && "
                       "test ! -e /d/data/backup_label && echo promoted || true")


def test_attach_starts_a_backend_whose_postgres_is_down_then_attaches_behind_the_guard(
        monkeypatch, tmp_path):
    """Chaos seed 11 step 75: PostgreSQL was killed on the resync's source after the verify;
    every resume's attach step refused it ("nothing accepts connections") and never started
    it. Now it is started first; pgpool.attach still compares it (a refusal still stops)."""
    from hatasks import backends, pg, pgpool
    from hatasks.errors import HaError

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    c = backends.pgpool_cluster(ctx, None)
    src, tgt = c.hosts[0], c.hosts[1]
    did = []
    running = {src.name: False, tgt.name: True}
    monkeypatch.setattr(backends, "read_pool_nodes", lambda ctx, name: {"backends": [
        {"node_id": src.pgpool_node_id, "host": src.name, "status": "down"},
        {"node_id": tgt.pgpool_node_id, "host": tgt.name, "status": "up"}]})
    monkeypatch.setattr(pg, "server_state", lambda ctx, h: {"running": running[h.name]})
    monkeypatch.setattr(pg, "start", lambda ctx, h, port: did.append(("pg.start", h.name)))
    monkeypatch.setattr(pgpool, "attach", lambda ctx, h, nid: did.append(("attach", h.name)))
    p = {"cluster": None, "source": src.name, "target": tgt.name}
    assert syncsteps.attach_backends(ctx, p, {}) == {"attached": [src.name]}
    assert did == [("pg.start", src.name), ("attach", src.name)]
    # running already: not started again; a refused attach is never forced (what follows a
    # refusal: test_attach_refused_source_is_left_detached_when_pgpool_wrote_to_the_target)
    did.clear()
    running[src.name] = True

    def refuse(ctx, h, nid):
        did.append(("attach", h.name))
        raise HaError("refusing to attach: contents differ", HaError.REFUSED)

    monkeypatch.setattr(pgpool, "attach", refuse)
    out = syncsteps.attach_backends(ctx, p, {})
    assert did == [("attach", src.name)] and out["left_detached"] == src.name


def test_attach_refused_source_is_left_detached_when_pgpool_wrote_to_the_target(
        monkeypatch, tmp_path):
    """Chaos wave 5 (open): the source's PostgreSQL killed after the verify, pgpool started
    with the target up and the source down, clients wrote to the target alone: the attach's
    comparison refuses the source (right) and every resume refused it again. The target is the
    verified copy plus every write since: the resync ends with the source left detached (never
    attached, its data untouched), verify_pool says degenerated, the summary names it."""
    from hatasks import backends, pg, pgpool, syncplan
    from hatasks.errors import HaError

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    c = backends.pgpool_cluster(ctx, None)
    src, tgt = c.hosts[0], c.hosts[1]
    view = {src.name: "down", tgt.name: "up"}
    monkeypatch.setattr(backends, "read_pool_nodes", lambda ctx, name: {
        "degenerated": "down" in view.values(), "backends": [
            {"node_id": h.pgpool_node_id, "host": h.name, "status": view[h.name]}
            for h in (src, tgt)]})
    monkeypatch.setattr(pg, "server_state", lambda ctx, h: {"running": True})
    tried = []

    def refuse(ctx, h, nid):
        tried.append(h.name)
        raise HaError(f"refusing to attach {h.name}: contents differ", HaError.REFUSED)

    monkeypatch.setattr(pgpool, "attach", refuse)
    p = {"cluster": None, "source": src.name, "target": tgt.name, "method": "dump"}
    st = syncsteps.attach_backends(ctx, p, {})
    assert tried == [src.name]
    assert st == {"attached": [], "left_detached": src.name,
                  "left_why": f"refusing to attach {src.name}: contents differ"}
    # verify_pool: the target up, the source not: degenerated, said so, not a wait for "all up"
    assert syncsteps.verify_pool(ctx, p, st) == {"degenerated": True}
    summary = syncplan.summary(dict(p, method="dump"), st, 1.0)
    assert summary["left_detached"] == src.name

    # the refused backend is the target (the copy), or the target is not up: still refused
    view.update({src.name: "up", tgt.name: "down"})
    with pytest.raises(HaError):
        syncsteps.attach_backends(ctx, p, {})
    view.update({src.name: "down", tgt.name: "down"})
    with pytest.raises(HaError):
        syncsteps.attach_backends(ctx, p, {})
    # any other error than a refusal is not a reason to leave the source out
    view.update({src.name: "down", tgt.name: "up"})
    monkeypatch.setattr(pgpool, "attach", lambda ctx, h, nid: (_ for _ in ()).throw(
        HaError("pcp timeout", HaError.NOT_CONVERGED)))
    assert "left_detached" not in syncsteps.attach_backends(ctx, p, {})


def test_online_recovery_step_repairs_pgpool_serving_nobody_and_nothing_else(monkeypatch, tmp_path):
    """The step's first SHOW pool_nodes: "not accepting any new connections", or pgpool running
    nowhere (stopped, e.g. a cut attempt of this repair) -> the source is served alone first
    (then read again); a pgpool that runs and fails otherwise still stops the step."""
    from hatasks import backends
    from hatasks.errors import UnreachableError

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    did = []
    monkeypatch.setattr(syncsteps, "kept_list", lambda ctx, t, d: [])
    monkeypatch.setattr(syncsteps, "wait_recovery_ended", lambda ctx, c, t, timeout: False)
    monkeypatch.setattr(syncsteps, "stop_standby_copy", lambda ctx, p, t: did.append("standby"))

    class Served(Exception):
        pass

    def serve(ctx, p, c):
        did.append("serve")
        raise Served()

    monkeypatch.setattr(syncsteps, "serve_source_alone", serve)
    for error, runs, want in (("ERROR:  pgpool is not accepting any new connections", "db02", Served),
                              ("connection refused", None, Served),   # stopped: started again
                              ("connection refused", "db02", UnreachableError)):
        did.clear()
        monkeypatch.setattr(syncsteps, "pool_host", lambda ctx, c, r=runs: r)
        monkeypatch.setattr(backends, "read_pool_nodes", lambda ctx, name, e=error: (_ for _ in ()).throw(
            UnreachableError(f"pgpool does not answer on 10.0.0.10:9999 ({e})")))
        with pytest.raises(want):
            syncsteps.recover_online(ctx, {"cluster": None, "source": "db01", "target": "db02",
                                           "pgdata": "/d"}, {})
        assert did == (["standby", "serve"] if want is Served else ["standby"])


def test_moved_by_recovery_reads_the_kept_list_since_the_plan(monkeypatch, tmp_path):
    """The resync-overtaken words: where the online recovery's 1st stage moved the target's
    own data (the first dir the scripts listed since the plan), False when none, None when the
    method is not online or the plan has no list length."""
    from hatasks.errors import UnreachableError

    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    listed = {"out": "/d/data.1\n/d/data.2\n/d/data.3\n"}
    sent = []
    monkeypatch.setattr(syncrescue, "probe", lambda ctx, h, cmd, user="postgres": sent.append(cmd)
                        or Result(stdout=listed["out"], exited=0))
    assert syncrescue.moved_by_recovery(ctx, "online", "db02", "/d/data", 1) == "/d/data.2"
    assert sent == ["cat /d/data.hatasks-kept 2>/dev/null || true"]
    assert syncrescue.moved_by_recovery(ctx, "online", "db02", "/d/data", 3) is False
    assert syncrescue.moved_by_recovery(ctx, "dump", "db02", "/d/data", 1) is None
    assert syncrescue.moved_by_recovery(ctx, "online", "db02", "/d/data", None) is None

    def down(ctx, h, cmd, user="postgres"):
        raise UnreachableError("ssh: no route")

    monkeypatch.setattr(syncrescue, "probe", down)
    assert syncrescue.moved_by_recovery(ctx, "online", "db02", "/d/data", 1) is None
