"""pg tasks on the real lab: status, compare (mismatch found, equality passes), stop/start on the
maintenance port with the backend detached, vacuum, dumpall (restores into an empty cluster,
--keep, an interrupted dump leaves nothing that looks complete). Every test leaves both backends
up on their port, attached to pgpool, with equal data."""

import json
import re
import subprocess
import time

import pytest

from hatasks import remote

from .conftest import INSTANCE, INV, ROOT

pytestmark = pytest.mark.lab

DUMPS = "/var/lib/postgresql/hatasks-lab-test-dumps"
SCRATCH = "/tmp/hatasks-lab-test-scratch"
SCRATCH_PORT = 5499
TABLES = ("customers", "orders", "order_lines")


def sh(hctx, host, command, user="postgres", warn=False):
    return remote.run(hctx, host, command, user=user, warn=warn, timeout=300)


def bindir(hctx):
    return remote.inventory(hctx).host("db01").vars["pg_bindir"]


def pg_status(inv):
    return {b["host"]: b for b in json.loads(inv("pg.status", "--format", "json", check=False).stdout)["backends"]}


def pool(inv):
    # exit 3 while pgpool is degenerated: the JSON is what the tests read
    proc = inv("pgpool.status", "--format", "json", check=False)
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout)


def restore_health(inv, hctx):
    """db02 back on its port, attached, equal to db01."""
    st = pg_status(inv)["db02"]
    if st["status"] != "up" or st["port"] != 5432:
        inv("pg.restart", "--host", "db02", "--force", "--yes")
    for b in pool(inv)["backends"]:
        if b["status"] != "up" and inv("pgpool.attach", "--node", b["host"], "--yes",
                                       check=False).returncode != 0:
            inv("pgpool.recover", "--node", b["host"], "--yes", timeout=600)
    if inv("pg.compare", check=False).returncode != 0:
        inv("pgpool.recover", "--node", "db02", "--yes", timeout=600)


def assert_healthy(inv):
    st = pg_status(inv)
    assert [(h, st[h]["status"], st[h]["port"]) for h in ("db01", "db02")] == [
        ("db01", "up", 5432), ("db02", "up", 5432)]
    assert [b["status"] for b in pool(inv)["backends"]] == ["up", "up"]
    inv("pg.compare")


def dump_files(hctx, host, dest):
    res = sh(hctx, host, f"ls -1A {dest} 2>/dev/null || true")
    return sorted(res.stdout.split())


def test_status_reaches_each_backend_directly(inv):
    data = json.loads(inv("pg.status", "--format", "json").stdout)
    assert [b["host"] for b in data["backends"]] == ["db01", "db02"]
    for b in data["backends"]:
        assert b["status"] == "up" and b["port"] == 5432
        assert b["version"].startswith("15")
        assert "GYOM_DB" in [d["name"] for d in b["databases"]]


def test_compare_detects_a_row_written_behind_pgpool(inv, hctx):
    inv("pg.compare")
    row = 910000 + INSTANCE
    try:
        remote.sql_rows(hctx, "db02", "INSERT INTO customers VALUES (%s, 'direct', %s, 'Nagoya', now())",
                        (row, f"direct{row}@example.invalid"), dbname="GYOM_DB")
        res = inv("pg.compare", "--format", "json", check=False)
        assert res.returncode == 3
        data = json.loads(res.stdout)
        assert data["equal"] is False
        (diff,) = data["differences"]
        assert (diff["database"], diff["table"]) == ("GYOM_DB", "public.customers")
        assert diff["counts"]["db02"] == diff["counts"]["db01"] + 1
        assert "GYOM_DB.public.customers" in res.stderr
    finally:
        remote.sql_rows(hctx, "db02", "DELETE FROM customers WHERE id = %s", (row,), dbname="GYOM_DB")
    assert json.loads(inv("pg.compare", "--format", "json").stdout)["equal"] is True


def test_stop_start_on_maintenance_port_with_backend_detached(inv, hctx):
    refused = inv("pg.stop", "--host", "db02", "--yes", check=False)
    assert refused.returncode == 7 and "detach it first" in refused.stderr
    assert pg_status(inv)["db02"]["status"] == "up"
    try:
        inv("pgpool.switch", "--node", "db02", "--yes")
        inv("pg.stop", "--host", "db02", "--mode", "fast", "--yes")
        st = pg_status(inv)["db02"]
        assert st["status"] == "down"

        # a start that fails shows the PostgreSQL log's error
        auto = remote.inventory(hctx).host("db02").vars["pgdata"] + "/postgresql.auto.conf"
        sh(hctx, "db02", f"cp -p {auto} {auto}.hatasks-test && "
                         f"echo \"shared_buffers = 'lots'\" >> {auto}")
        try:
            bad = inv("pg.start", "--host", "db02", "--port", "1234", "--yes", check=False)
        finally:
            sh(hctx, "db02", f"mv -f {auto}.hatasks-test {auto}")
        assert bad.returncode == 3, bad.stdout + bad.stderr
        assert 'invalid value for parameter "shared_buffers"' in bad.stderr
        assert pg_status(inv)["db02"]["status"] == "down"

        inv("pg.start", "--host", "db02", "--port", "1234", "--yes")
        st = pg_status(inv)["db02"]
        assert (st["status"], st["port"]) == ("up", 1234)
        assert "1234" in st["note"]
        # applications (pgpool) cannot reach it on 1234: db02 stays down in pgpool
        assert pool(inv)["backends"][1]["status"] == "down"

        before = set(dump_files(hctx, "db02", DUMPS))
        vac = inv("pg.vacuum", "--host", "db02", "--port", "1234", "--dest", DUMPS, "--quiet")
        assert vac.stdout == ""
        logs = [f for f in set(dump_files(hctx, "db02", DUMPS)) - before
                if re.match(r"^db02_vacuumdb\.\d{8}-\d{6}\.log$", f)]
        assert len(logs) == 1
        assert "vacuuming" in sh(hctx, "db02", f"cat {DUMPS}/{logs[0]}").stdout

        inv("pg.restart", "--host", "db02", "--mode", "smart", "--yes")
        assert pg_status(inv)["db02"]["port"] == 5432
        inv("pgpool.attach", "--node", "db02", "--yes")
    finally:
        restore_health(inv, hctx)
        sh(hctx, "db02", f"rm -rf {DUMPS}")
    assert_healthy(inv)


def test_vacuum_db01_quiet(inv, hctx):
    try:
        res = inv("pg.vacuum", "--host", "db01", "--dest", DUMPS, "--quiet")
        assert res.stdout == "" and res.stderr == ""
        assert any(re.match(r"^db01_vacuumdb\.\d{8}-\d{6}\.log$", f) for f in dump_files(hctx, "db01", DUMPS))
    finally:
        sh(hctx, "db01", f"rm -rf {DUMPS}")


def test_dumpall_restores_into_an_empty_cluster_and_keeps_n(inv, hctx):
    pg_bin = bindir(hctx)
    try:
        for _ in range(3):
            inv("pg.dumpall", "--host", "db01", "--dest", DUMPS, "--keep", "2", "--quiet")
        files = dump_files(hctx, "db01", DUMPS)
        sqls = [f for f in files if re.match(r"^db01_dumpall\.\d{8}-\d{6}\.sql$", f)]
        logs = [f for f in files if re.match(r"^db01_dumpall\.\d{8}-\d{6}\.log$", f)]
        assert len(sqls) == 2 and len(logs) == 2, files
        assert not [f for f in files if "partial" in f or "FAILED" in f]
        dump = f"{DUMPS}/{sqls[-1]}"

        sh(hctx, "db01", f"rm -rf {SCRATCH} && mkdir -p {SCRATCH} && "
                         f"{pg_bin}/initdb -D {SCRATCH}/data -U postgres --auth=trust >/dev/null && "
                         f"{pg_bin}/pg_ctl -D {SCRATCH}/data -o '-p {SCRATCH_PORT} -k {SCRATCH}' "
                         f"-l {SCRATCH}/server.log -w start >/dev/null")
        sh(hctx, "db01", f"psql -X -q -h {SCRATCH} -p {SCRATCH_PORT} -d postgres -f {dump} "
                         f"> {SCRATCH}/restore.log 2>&1", warn=True)
        for table in TABLES:
            q = f"psql -X -At -d GYOM_DB -c 'SELECT count(*) FROM {table}'"
            restored = sh(hctx, "db01", f"{q} -h {SCRATCH} -p {SCRATCH_PORT}").stdout.strip()
            source = sh(hctx, "db01", q).stdout.strip()
            assert restored == source and int(source) > 0, (table, restored, source)
    finally:
        sh(hctx, "db01", f"if [ -f {SCRATCH}/data/postmaster.pid ]; then "
                         f"{pg_bin}/pg_ctl -D {SCRATCH}/data -m immediate -w stop; fi; rm -rf {SCRATCH}",
           warn=True)
        sh(hctx, "db01", f"rm -rf {DUMPS}")
    assert sh(hctx, "db01", f"test -e {SCRATCH}", warn=True).exited != 0


def test_interrupted_dumpall_leaves_nothing_that_looks_complete(inv, hctx):
    dest = DUMPS + "-interrupted"
    proc = None
    try:
        with remote.pg_connect(hctx, "db01", dbname="GYOM_DB", autocommit=False) as conn:
            with conn.cursor() as cur:
                # pg_dump of GYOM_DB will wait for this lock: the dump is provably in the middle
                cur.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
                proc = subprocess.Popen(
                    [INV, "pg.dumpall", "--host", "db01", "--dest", dest, "--quiet"],
                    cwd=ROOT, env=inv.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                waiting = []
                for _ in range(120):
                    rows = remote.sql_rows(
                        hctx, "db01", "SELECT pid FROM pg_stat_activity WHERE application_name = "
                        "'pg_dump' AND datname = 'GYOM_DB' AND wait_event_type = 'Lock'")
                    waiting = [r["pid"] for r in rows]
                    if waiting:
                        break
                    time.sleep(0.5)
                assert waiting, "pg_dump never started waiting on the lock"
                files = dump_files(hctx, "db01", dest)
                assert any(f.endswith(".sql.partial") for f in files), files
                pids = sh(hctx, "db01", "pgrep -x pg_dumpall", user="root").stdout.split()
                assert len(pids) == 1, pids
                sh(hctx, "db01", f"kill -TERM {pids[0]}", user="root")
                conn.rollback()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 3, (out, err)
        assert out == ""
        assert len(err.strip().splitlines()) == 1 and "pg_dumpall failed" in err
        files = dump_files(hctx, "db01", dest)
        assert not [f for f in files if re.match(r"^db01_dumpall\.\d{8}-\d{6}\.(sql|log)$", f)], files
        assert not [f for f in files if f.endswith(".sql.partial")], files
        assert [f for f in files if f.endswith(".FAILED.log")], files
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        sh(hctx, "db01", f"rm -rf {dest}")
    inv("pg.compare")
