"""pg tasks: the commands (run for real against stub binaries where quoting matters),
version-dependent flags, dump rename/keep logic, validation before anything is sent. The network
is the shared FakeRemote (tests/unit/conftest.py); nothing reaches a host."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import invoke
import pytest
from psycopg2 import sql

from hatasks import compare, journal, pg, remote
from hatasks.errors import HaError, UnreachableError

from conftest import FIXTURES, ROOT, Seq, fail, make_ctx, psql_rows

CAPTURES = FIXTURES / "captures"
BIN = "/usr/lib/postgresql/15/bin"
PGDATA = "/var/lib/postgresql/15/data"
BOTH_UP = psql_rows((FIXTURES / "lab-samples" / "show_pool_nodes.txt").read_text())
DB02_DOWN = [dict(r, status="down") if r["hostname"] == "db02" else r for r in BOTH_UP]


@pytest.fixture
def rec(fake):
    """The FakeRemote; a command nobody answers in particular succeeds with no output."""
    fake.on(lambda host, cmd: True, (0, ""))
    return fake


def answers(fake, pairs):
    """Register (needle, answer) pairs, the first matching pair winning; a list of answers is
    given one after the other."""
    for needle, answer in reversed(pairs):
        fake.on(needle, Seq(answer) if isinstance(answer, list) else answer)


@pytest.fixture
def stub_pg(tmp_path):
    """A pg_bindir (with a space in its path) whose pg_ctl, pg_dumpall and vacuumdb print the
    arguments they received, one per line."""
    bindir = tmp_path / "pg bin" / "bin"
    bindir.mkdir(parents=True)
    for name in ("pg_ctl", "pg_dumpall", "vacuumdb"):
        (bindir / name).write_text('#!/bin/sh\nfor a in "$0" "$@"; do printf \'%s\\n\' "$a"; done\n')
        (bindir / name).chmod(0o755)
    return bindir


@pytest.fixture
def spaced_ctx(tmp_path, stub_pg):
    inv = tmp_path / "hosts.ini"
    inv.write_text(
        "[db]\ndb01 ansible_host=10.9.9.1 pgpool_node_id=0\n"
        "[db:vars]\ncluster_kind=db\nvip=10.9.9.100\npg_port=5432\n"
        f"pg_bindir={stub_pg}\npgdata=\"{tmp_path}/pg data/main\"\n"
        f"pg_ctl_log={tmp_path}/it's logs/pg_ctl.log\n"
    )
    return make_ctx(tmp_path, inventory=inv)


def sh(command, cwd=None):
    res = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def _host(ctx, name="db01"):
    return remote.inventory(ctx).host(name)


# ------------------------------------------------------------------ commands


def test_start_command_passes_each_value_as_one_argument(spaced_ctx, stub_pg, tmp_path):
    h = _host(spaced_ctx)
    log = f"{tmp_path}/it's logs/pg_ctl.log"
    assert sh(pg.start_command(h, 1234, 60)) == [
        f"{stub_pg}/pg_ctl", "-D", f"{tmp_path}/pg data/main", "-o", "-p 1234", "-l", log,
        "-w", "-t", "60", "start"]
    assert os.path.isdir(os.path.dirname(log))   # made for pg_ctl's -l
    assert "-o" not in sh(pg.start_command(h, None, 30))


def test_stop_command_passes_each_value_as_one_argument(spaced_ctx, stub_pg, tmp_path):
    assert sh(pg.stop_command(_host(spaced_ctx), "immediate", 10)) == [
        f"{stub_pg}/pg_ctl", "-D", f"{tmp_path}/pg data/main", "-m", "immediate", "-w", "-t",
        "10", "stop"]


def test_dumpall_command_writes_its_files_private_in_dest(spaced_ctx, stub_pg, tmp_path):
    dest = tmp_path / "dumps"
    dest.mkdir()
    cmd = pg.dumpall_command(_host(spaced_ctx), 1234, ["-c", "-v"], str(dest), ".a.partial",
                             ".b.partial")
    assert sh(cmd) == [f"{stub_pg}/pg_dumpall", "-p", "1234", "-c", "-v", "-f", ".a.partial"]
    assert stat.S_IMODE((dest / ".b.partial").stat().st_mode) == 0o600


def test_vacuum_command_logs_everything_in_dest(spaced_ctx, stub_pg, tmp_path):
    dest = tmp_path / "dumps"
    dest.mkdir()
    assert sh(pg.vacuum_command(_host(spaced_ctx), 5432, str(dest), ".x.partial")) == []
    assert (dest / ".x.partial").read_text().splitlines() == [
        f"{stub_pg}/vacuumdb", "-p", "5432", "-a", "-f", "-z", "-v"]
    assert stat.S_IMODE((dest / ".x.partial").stat().st_mode) == 0o600


@pytest.mark.parametrize("version,flags", [
    (80204, ["-c", "-v", "-o"]), (110022, ["-c", "-v", "-o"]),
    (120000, ["-c", "-v"]), (150004, ["-c", "-v"]),
])
def test_dumpall_flags_by_version(version, flags):
    assert pg.dumpall_flags(version) == flags


def test_count_query_uses_identifiers():
    q = compare.count_query('we"ird', "Tab le")
    assert isinstance(q, sql.Composed)
    parts = list(q)
    assert sql.Identifier('we"ird') in parts and sql.Identifier("Tab le") in parts


def test_parse_server_state():
    out = "rc=0\n4242\n/var/lib/postgresql/15/data\n1700000000\n1234\n"
    assert pg.parse_server_state(out) == {"running": True, "pid": 4242, "port": 1234, "pg_ctl_rc": "0",
                                          "datadir": True}
    assert pg.parse_server_state("rc=3\n")["running"] is False
    assert pg.parse_server_state("rc=4\n")["datadir"] is False  # no accessible data directory


# ------------------------------------------------------------------ dump names and pruning


def test_dump_names_partial_never_looks_complete():
    n = pg.dump_names("db01", "20261125-170000")
    assert n["sql"] == "db01_dumpall.20261125-170000.sql"
    assert n["log"] == "db01_dumpall.20261125-170000.log"
    pat = pg.dump_pattern("db01")
    assert pat.match(n["sql"])
    for key in ("tmp_sql", "tmp_log", "failed_log", "log"):
        assert not pat.match(n[key])


def test_prune_plan_keeps_newest_and_touches_only_our_files():
    names = [
        "db01_dumpall.20261101-010000.sql", "db01_dumpall.20261101-010000.log",
        "db01_dumpall.20261102-010000.sql", "db01_dumpall.20261102-010000.log",
        "db01_dumpall.20261103-010000.sql", "db01_dumpall.20261103-010000.log",
        "db01_dumpall.20261104-010000.sql",
        "db02_dumpall.20261001-010000.sql",            # another host's dump
        "db01_dumpall.20261001-010000.sql.bak",        # not our pattern
        ".db01_dumpall.20261001-010000.sql.partial",   # in progress / interrupted
        "db01_dumpall.20261001-010000.FAILED.log",
        "notes.txt",
    ]
    assert pg.prune_plan(names, "db01", 2) == [
        "db01_dumpall.20261101-010000.sql", "db01_dumpall.20261101-010000.log",
        "db01_dumpall.20261102-010000.sql", "db01_dumpall.20261102-010000.log",
    ]
    assert pg.prune_plan(names, "db01", 10) == []
    assert pg.prune_plan(names, "db01", None) == []


# ------------------------------------------------------------------ dumpall flow


def server_version(fake, num):
    fake.sql("server_version_num", [{"v": num}])


@pytest.fixture
def fixed_time(monkeypatch, rec):
    monkeypatch.setattr(pg, "_stamp", lambda: "20261125-170000")
    server_version(rec, 150004)


D = "/var/lib/postgresql/dumps"
TMP_SQL = ".db01_dumpall.20261125-170000.sql.partial"
TMP_LOG = ".db01_dumpall.20261125-170000.log.partial"


def test_dumpall_success_renames_and_prunes(ctx, rec, fixed_time):
    ok_log = (CAPTURES / "pg_dumpall_v_ok.log").read_text()
    answers(rec, [
        ("pg_dumpall -p", (0, "")),
        (f"cat {D}/{TMP_LOG}", (0, ok_log)),
        (f"ls -1A {D}", [
            (0, "db01_dumpall.20261101-010000.sql\ndb01_dumpall.20261101-010000.log\n"),
            (0, "db01_dumpall.20261101-010000.sql\ndb01_dumpall.20261101-010000.log\n"
                "db01_dumpall.20261125-170000.sql\ndb01_dumpall.20261125-170000.log\n")]),
        ("stat -c %s", (0, "77744\n")),
    ])
    pg.dumpall_task(ctx, host="db01", keep=1, quiet=True)
    # journaled like every operation (start, done), without asking for confirmation
    events = [(r["action"], r["event"]) for r in journal.history(ctx)]
    assert ("pg.dumpall", "start") in events and ("pg.dumpall", "done") in events
    assert rec.commands == [
        f"mkdir -p -m 700 {D}",
        f"ls -1A {D}",
        f"umask 077 && cd {D} && {BIN}/pg_dumpall -p 5432 -c -v -f {TMP_SQL} 2> {TMP_LOG}",
        f"cat {D}/{TMP_LOG}",
        f"mv -- {D}/{TMP_LOG} {D}/db01_dumpall.20261125-170000.log && "
        f"mv -- {D}/{TMP_SQL} {D}/db01_dumpall.20261125-170000.sql",
        f"ls -1A {D}",
        f"cd {D} && rm -f -- db01_dumpall.20261101-010000.sql db01_dumpall.20261101-010000.log",
        f"stat -c %s {D}/db01_dumpall.20261125-170000.sql",
    ]
    assert all(c.user == "postgres" for c in rec.calls)


def test_dumpall_old_server_adds_o(ctx, rec, monkeypatch):
    monkeypatch.setattr(pg, "_stamp", lambda: "20261125-170000")
    server_version(rec, 80204)
    answers(rec, [("cat ", (0, "pg_dumpall: dumping database \"x\"\n"))])
    pg.dumpall_task(ctx, host="db01", port=1234, dest="/tmp/d", quiet=True)
    assert ("umask 077 && cd /tmp/d && " + BIN + "/pg_dumpall -p 1234 -c -v -o -f "
            + TMP_SQL + " 2> " + TMP_LOG) in rec.commands


@pytest.mark.parametrize("rc,logname", [(1, "pg_dumpall_v_ok.log"), (0, "pg_dumpall_v_pg_dump_failed.log"),
                                        (143, "pg_dumpall_v_ok.log")])
def test_dumpall_failure_never_renames_to_final_name(ctx, rec, fixed_time, rc, logname, capsys):
    answers(rec, [("pg_dumpall -p", (rc, "")),
                  ("cat ", (0, (CAPTURES / logname).read_text()))])
    with pytest.raises(invoke.Exit) as exc:
        pg.dumpall_task(ctx, host="db01", keep=3, quiet=True)
    assert exc.value.code == HaError.STATE
    assert rec.commands[-1] == (
        f"rm -f -- {D}/{TMP_SQL}; mv -f -- {D}/{TMP_LOG} {D}/db01_dumpall.20261125-170000.FAILED.log"
    )
    assert not any("db01_dumpall.20261125-170000.sql" in c and c.startswith("mv --") for c in rec.commands)
    assert not any("rm -f -- db01_dumpall" in c for c in rec.commands)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pg_dumpall failed" in err[0]


def test_dumpall_quiet_prints_nothing_on_success(ctx, rec, fixed_time, capsys):
    pg.dumpall_task(ctx, host="db01", quiet=True)
    assert capsys.readouterr().out == ""


def test_dumpall_refused_when_locked(ctx, rec, fixed_time, monkeypatch):
    def locked(ctx, cluster):
        raise HaError("cluster db is locked by x running db.failover", HaError.LOCKED)

    monkeypatch.setattr(journal, "check_unlocked", locked)
    with pytest.raises(invoke.Exit) as exc:
        pg.dumpall_task(ctx, host="db01", quiet=True)
    assert exc.value.code == HaError.LOCKED
    assert rec.calls == []


def test_dumpall_never_reuses_an_existing_stamp(ctx, rec, monkeypatch):
    stamps = iter(["20261125-170000", "20261125-170001"])
    monkeypatch.setattr(pg, "_stamp", lambda: next(stamps))
    monkeypatch.setattr(pg.time, "sleep", lambda s: None)
    server_version(rec, 150004)
    answers(rec, [(f"ls -1A {D}", (0, "db01_dumpall.20261125-170000.sql\n"))])
    pg.dumpall_task(ctx, host="db01", quiet=True)
    assert any("-f .db01_dumpall.20261125-170001.sql.partial" in c for c in rec.commands)


def test_vacuum_success_and_failure(ctx, rec, monkeypatch):
    monkeypatch.setattr(pg, "_stamp", lambda: "20261125-170000")
    answers(rec, [("cat ", (0, (CAPTURES / "vacuumdb_afzv_ok.log").read_text()))])
    pg.vacuum_task(ctx, host="db02", port=1234, quiet=True)
    log = ".db02_vacuumdb.20261125-170000.log.partial"
    assert rec.commands == [
        f"mkdir -p -m 700 {D}",
        f"ls -1A {D}",
        f"umask 077 && cd {D} && {BIN}/vacuumdb -p 1234 -a -f -z -v > {log} 2>&1",
        f"cat {D}/{log}",
        f"mv -- {D}/{log} {D}/db02_vacuumdb.20261125-170000.log",
    ]
    rec.calls.clear()
    answers(rec, [("vacuumdb -p", (1, "")),
                  ("cat ", (0, (CAPTURES / "vacuumdb_afzv_no_server.log").read_text()))])
    with pytest.raises(invoke.Exit):
        pg.vacuum_task(ctx, host="db02", quiet=True)
    assert rec.commands[-1].endswith("db02_vacuumdb.20261125-170000.FAILED.log")


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("call", [
    lambda c: pg.start_task(c, host="db09", yes=True),
    lambda c: pg.start_task(c, host="lb01", yes=True),
    lambda c: pg.start_task(c, host="db01", port=0, yes=True),
    lambda c: pg.start_task(c, host="db01", port=65536, yes=True),
    lambda c: pg.start_task(c, host="db01", port="12a", yes=True),
    lambda c: pg.start_task(c, host="db01;reboot", yes=True),
    lambda c: pg.stop_task(c, host="db01", mode="hard", yes=True),
    lambda c: pg.restart_task(c, host="db01", mode="fast ", yes=True),
    lambda c: pg.dumpall_task(c, host="db01", dest="/tmp/x;rm -rf /"),
    lambda c: pg.dumpall_task(c, host="db01", dest="relative/dir"),
    lambda c: pg.dumpall_task(c, host="db01", dest="/tmp/../etc"),
    lambda c: pg.dumpall_task(c, host="db01", keep=0),
    lambda c: pg.dumpall_task(c, host="db01", keep="x"),
    lambda c: pg.vacuum_task(c, host="db01", port=-1),
    lambda c: pg.status_task(c, format="yaml"),
    lambda c: pg.status_task(c, host="lb01"),
    lambda c: pg.status_task(c, host="db09"),
    lambda c: pg.compare_task(c, format="xml"),
])
def test_bad_input_sends_nothing(ctx, rec, call):
    with pytest.raises(invoke.Exit) as exc:
        call(ctx)
    assert exc.value.code == HaError.USAGE
    assert rec.calls == [] and rec.queries == []


def test_stop_refused_while_backend_attached(ctx, rec):
    rec.sql("SHOW pool_nodes", BOTH_UP)
    with pytest.raises(invoke.Exit) as exc:
        pg.stop_task(ctx, host="db02", yes=True)
    assert exc.value.code == HaError.REFUSED
    assert rec.calls == []


def test_stop_detached_backend_runs_pg_ctl(ctx, rec):
    rec.sql("SHOW pool_nodes", DB02_DOWN)
    rec.sql("SELECT 1", fail("connection refused"))
    rec.on("status >/dev/null", Seq([(0, "rc=0\n99\n/x\n1\n5432\n"), (0, "rc=3\n")]))
    pg.stop_task(ctx, host="db02", mode="smart", yes=True)
    assert f"{BIN}/pg_ctl -D {PGDATA} -m smart -w -t 60 stop" in rec.commands


def test_stop_when_pgpool_does_not_answer_goes_on_with_a_note(ctx, rec, capsys):
    rec.sql("SHOW pool_nodes", fail("connection refused"))
    rec.sql("SELECT 1", fail("connection refused"))
    rec.on("status >/dev/null", Seq([(0, "rc=0\n99\n/x\n1\n5432\n"), (0, "rc=3\n")]))
    pg.stop_task(ctx, host="db02", yes=True)
    assert "cannot tell whether this backend is attached" in capsys.readouterr().err


def test_stop_with_a_wrong_pgdata_does_not_call_a_running_server_stopped(ctx, rec):
    rec.sql("SHOW pool_nodes", DB02_DOWN)
    rec.on("status >/dev/null", (0, "rc=3\n"))  # pg_ctl finds no server for this pgdata ...
    rec.sql("SELECT 1", [{"one": 1}])            # ... while PostgreSQL answers on pg_port
    with pytest.raises(invoke.Exit) as exc:
        pg.stop_task(ctx, host="db02", yes=True)
    assert exc.value.code == HaError.STATE
    assert not [c for c in rec.commands if c.endswith(" stop")]


def test_stop_with_a_missing_data_directory_is_a_state_error(ctx, rec):
    rec.sql("SHOW pool_nodes", DB02_DOWN)
    rec.on("status >/dev/null", (0, "rc=4\n"))
    with pytest.raises(invoke.Exit) as exc:
        pg.stop_task(ctx, host="db02", yes=True)
    assert exc.value.code == HaError.STATE


def test_dumpall_on_a_host_that_does_not_answer_exits_unreachable(ctx, rec):
    rec.sql("SHOW server_version_num", UnreachableError("db01: ssh: timed out"))
    rec.sql("server_version_num", UnreachableError("db01: ssh: timed out"))
    with pytest.raises(invoke.Exit) as exc:
        pg.dumpall_task(ctx, host="db01")
    assert exc.value.code == HaError.UNREACHABLE


# ------------------------------------------------------------------ compare (pure part)


def test_compare_diff_tables_finds_mismatch_and_missing():
    per_host = {
        "db01": {"GYOM_DB": {"public.a": 10, "public.b": 3}, "postgres": {}},
        "db02": {"GYOM_DB": {"public.a": 11}, "postgres": {}},
    }
    rows, diffs = compare.diff_tables(per_host)
    assert [(d["table"], d["counts"]) for d in diffs] == [
        ("public.a", {"db01": 10, "db02": 11}), ("public.b", {"db01": 3, "db02": None})]
    assert diffs[1]["note"] == "missing on db02"


def test_compare_diff_tables_equal():
    per_host = {"db01": {"GYOM_DB": {"public.a": 5}}, "db02": {"GYOM_DB": {"public.a": 5}}}
    rows, diffs = compare.diff_tables(per_host)
    assert diffs == [] and rows[0]["equal"] is True


def test_compare_diff_tables_missing_database():
    rows, diffs = compare.diff_tables({"db01": {"X": {}}, "db02": {}})
    assert diffs and diffs[0]["note"] == "database missing on db02"


def test_failed_start_shows_the_log_errors(ctx, rec, capsys):
    answers(rec, [
        ("status >/dev/null", (0, "rc=3\n")),
        ("-w -t 60 start", (1, (CAPTURES / "pg_ctl_start_bad_config.txt").read_text())),
        ("ls -1t /var/lib/postgresql/15/data/log/postgresql-*.log",
         (0, (CAPTURES / "pg_startup_invalid_value.log").read_text())),
    ])
    with pytest.raises(invoke.Exit) as exc:
        pg.start_task(ctx, host="db01", port=1234, yes=True)
    assert exc.value.code == HaError.STATE
    assert rec.commands[1:] == [
        f"mkdir -p /var/log/postgresql && {BIN}/pg_ctl -D {PGDATA} -o '-p 1234' "
        f"-l /var/log/postgresql/pg_ctl.log -w -t 60 start",
        "tail -n 200 /var/log/postgresql/pg_ctl.log",
        f"f=$(ls -1t {PGDATA}/log/postgresql-*.log 2>/dev/null | head -n 1); "
        f"[ -n \"$f\" ] && tail -n 200 \"$f\"",
    ]
    err = capsys.readouterr().err
    assert 'invalid value for parameter "shared_buffers": "lots"' in err
    assert "did not start on port 1234" in err


def test_dumpall_refused_when_another_process_holds_the_lock(ctx, rec, fixed_time):
    """The real lock file held by another process (as a running scenario would): exit 5,
    nothing sent to the host."""
    state = ctx.config.hatasks.state_dir
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time, invoke
        sys.path.insert(0, {str(ROOT)!r})
        from hatasks import journal
        ctx = invoke.Context(invoke.Config(overrides={{"hatasks": {{"state_dir": {state!r}}}}}))
        journal.acquire(ctx, "db", "db.failover")
        print("held", flush=True)
        time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(invoke.Exit) as exc:
            pg.dumpall_task(ctx, host="db01", quiet=True)
        assert exc.value.code == HaError.LOCKED
        assert rec.calls == []
    finally:
        holder.kill()
        holder.wait()


def test_status_host_shows_that_backend_alone(ctx, rec, monkeypatch, capsys):
    asked = []

    def info(c, host, port=None):
        asked.append(host.name)
        return {"host": host.name, "status": "up", "port": 5432, "version": "15.8",
                "version_num": 150008, "databases": [], "reason": None}

    monkeypatch.setattr(pg, "backend_info", info)
    pg.status_task(ctx, host="db02", format="json")
    data = json.loads(capsys.readouterr().out)
    assert asked == ["db02"]
    assert data["cluster"] == "db" and [b["host"] for b in data["backends"]] == ["db02"]
