"""sync.resync on the real lab: every method after a real degeneration, the online method under a
client writing through pgpool, and the faults (source killed during the dump, target killed during
the import, SIGINT, a second resync, rollback). Every test ends with the cluster healthy: both
backends up in pgpool, row counts and checksums equal (sync.verify, pg.compare).

Rows are written by the test the way an application does: psycopg2 to the DB VIP, port 9999
(the lab's own subnet, reachable from the operator machine). Backends are read directly.
"""

import json
import pathlib
import signal
import subprocess
import threading
import time

import psycopg2
import pytest

from tests.lab.conftest import INSTANCE, INV, ROOT

pytestmark = pytest.mark.lab

NET = f"10.231.{INSTANCE}"
VIP = f"{NET}.100"
ADDR = {"db01": f"{NET}.11", "db02": f"{NET}.12"}
STATE = ROOT / "lab" / ".state" / str(INSTANCE)
PGDATA = "/var/lib/postgresql/15/data"
DB = "GYOM_DB"


def _password():
    line = (STATE / "pgpass").read_text().splitlines()[0]
    return line.rsplit(":", 1)[1]


def connect(host=None, port=5432, timeout=5):
    """To a backend directly (host) or through pgpool (host None: VIP:9999)."""
    if host is None:
        return psycopg2.connect(host=VIP, port=9999, dbname=DB, user="postgres", connect_timeout=timeout,
                                password=_password())
    return psycopg2.connect(host=ADDR[host], port=port, dbname=DB, user="postgres", connect_timeout=timeout,
                            password=_password())


def q(sql, host=None, args=None):
    conn = connect(host)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def ssh(host, command, check=True, timeout=60):
    res = subprocess.run(["ssh", "-F", str(STATE / "ssh_config"), host, command], capture_output=True,
                         text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{host}: {command}: {res.returncode} {res.stderr}")
    return res.stdout


def pool(inv):
    # exit 3 while pgpool is degenerated: the JSON is what the tests read
    proc = inv("pgpool.status", "--format", "json", check=False)
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout)


def kept_dirs(host):
    return sorted(ssh(host, f"cd {PGDATA}/.. && for d in data.*; do [ -d \"$d\" ] && echo \"$d\"; done; true").split())


def assert_healthy(inv):
    data = pool(inv)
    assert [b["status"] for b in data["backends"]] == ["up", "up"], data["backends"]
    assert not data["degenerated"]
    inv("sync.verify")            # exit 3 on any difference (row count or checksum)
    inv("pg.compare")


def degenerate(inv, away, marker, n=5):
    """Detach AWAY from pgpool, then write N rows through pgpool: only the other backend has them."""
    q("CREATE TABLE IF NOT EXISTS sync_lab (id integer PRIMARY KEY, marker text NOT NULL)")
    inv("pgpool.switch", "--node", away, "--yes")
    base = q("SELECT coalesce(max(id), 0) FROM sync_lab")[0][0]
    ids = list(range(base + 1, base + n + 1))
    for i in ids:
        q("INSERT INTO sync_lab VALUES (%s, %s)", args=(i, marker))
    other = "db01" if away == "db02" else "db02"
    assert q("SELECT count(*) FROM sync_lab WHERE marker = %s", other, (marker,))[0][0] == n
    assert q("SELECT count(*) FROM sync_lab WHERE marker = %s", away, (marker,))[0][0] == 0
    return other, ids


def assert_rows_on_both(marker, n):
    for h in ("db01", "db02"):
        assert q("SELECT count(*) FROM sync_lab WHERE marker = %s", h, (marker,))[0][0] == n, h


def journal_steps(state_dir):
    path = pathlib.Path(state_dir) / "journal.jsonl"
    if not path.exists():
        return []
    return [r.get("step") for r in map(json.loads, path.read_text().splitlines())
            if r.get("event") == "checkpoint"]


def wait_for(what, fn, timeout=120, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def popen_inv(inv, *args):
    return subprocess.Popen([INV, *args], cwd=ROOT, env=inv.env, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_postmaster(host):
    ssh(host, f"kill -9 $(head -n 1 {PGDATA}/postmaster.pid)")


def pids_of(host, name):
    return ssh(host, f"pgrep -x {name} || true").split()


def importing(host):
    """PIDs of the resync's import psql on HOST (pgrep inside the lab host's own PID namespace)."""
    return ssh(host, "pgrep -f -- 'psql -X -q -v ON_ERROR_STOP=1' || true").split()


@pytest.fixture(autouse=True)
def tidy(inv):
    """After each test: its dumps and logs deleted, the data dirs it kept removed by name (with
    sync.cleanup), so repeated runs do not fill the lab's disk."""
    before = {h: set(kept_dirs(h)) for h in ("db01", "db02")}
    yield
    inv("sync.cleanup", "--delete", "--yes")
    for h in ("db01", "db02"):
        for name in sorted(set(kept_dirs(h)) - before[h]):
            inv("sync.cleanup", "--remove-datadir", name, "--host", h, "--yes")


# --------------------------------------------------------------------------- the three methods


@pytest.mark.parametrize("method,away", [("dump", "db02"), ("basebackup", "db01")])
def test_resync_after_degeneration(inv, method, away):
    marker = f"{method}-{time.time():.0f}"
    source, ids = degenerate(inv, away, marker)
    before = kept_dirs(away)
    res = inv("sync.resync", "--method", method, "--yes", timeout=600)
    assert f"from {source} (source) to {away} (target)" in res.stdout
    assert "verified:" in res.stdout
    assert_rows_on_both(marker, len(ids))
    after = kept_dirs(away)
    assert len(after) == len(before) + 1, (before, after)   # the old data dir is kept
    new = sorted(set(after) - set(before))[0]
    assert ssh(away, f"cat {PGDATA}/../{new}/PG_VERSION").strip() == "15"
    # the resync is journaled with every step
    steps = journal_steps(inv.state_dir)
    assert {"stop_pgpool", "keep_datadir", "verify", "start_pgpool", "verify_pool"} <= set(steps)
    assert_healthy(inv)
    # both up and identical now: nothing to do
    res = inv("sync.resync", "--yes")
    assert "nothing to do" in res.stdout


def run_on_pty(inv, *args, timeout=600):
    """Run `inv ARGS` with its stdout on a pseudo-terminal (as an operator at a terminal sees
    it); returns (exit code, everything written to the terminal)."""
    import os
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([INV, *args], cwd=ROOT, env=inv.env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:       # EIO: the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    proc.wait(timeout=60)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_and_figures_in_the_journal(inv):
    """On a terminal the long steps draw one line in place (done, rate); the journal has each
    long step's final figures; without a terminal (every other test here) none of it."""
    marker = f"progress-{time.time():.0f}"
    degenerate(inv, "db02", marker, n=2)
    rc, screen = run_on_pty(inv, "sync.resync", "--method", "dump", "--yes")
    assert rc == 0, screen[-2000:]
    drawn = [part for line in screen.split("\n") for part in line.split("\r")[1:] if part.strip()]
    assert any(p.startswith("db01: pg_dumpall  ") and "/s" in p for p in drawn), drawn
    assert any(p.startswith("db02: import  ") and " of " in p for p in drawn), drawn
    assert any(p.startswith("verify ") and " tables" in p for p in drawn), drawn
    recs = [json.loads(ln) for ln in (inv.state_dir / "journal.jsonl").read_text().splitlines()]
    data = {r["step"]: r.get("data") or {} for r in recs if r.get("event") == "checkpoint"}
    dump = data["dump_source"]["dump_figures"]
    assert dump["bytes"] == data["dump_source"]["dump_bytes"] > 0 and dump["seconds"] > 0
    assert data["import"]["import_figures"]["bytes"] == dump["bytes"]
    assert data["verify"]["verify_figures"]["tables"] > 0
    assert_rows_on_both(marker, 2)
    assert_healthy(inv)


def test_online_resync_under_load(inv):
    marker = f"online-{time.time():.0f}"
    source, ids = degenerate(inv, "db02", marker)
    q("CREATE TABLE IF NOT EXISTS sync_load (id integer PRIMARY KEY, note text NOT NULL)")
    start_id = q("SELECT coalesce(max(id), 0) FROM sync_load")[0][0] + 1
    stop = threading.Event()
    acked, failures, ok_times = [], [], []

    def writer():
        i = start_id
        while not stop.is_set():
            try:
                conn = connect(timeout=30)
                try:
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO sync_load VALUES (%s, %s)", (i, marker))
                finally:
                    conn.close()
                acked.append(i)
                ok_times.append(time.monotonic())
                i += 1
            except psycopg2.Error as exc:
                failures.append((time.monotonic(), str(exc).strip()[:100]))
            time.sleep(0.05)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    time.sleep(1)
    t0 = time.monotonic()
    res = inv("sync.resync", "--method", "online", "--yes", timeout=600)
    t1 = time.monotonic()
    time.sleep(1)
    stop.set()
    th.join(60)
    assert "online recovery done" in res.stdout
    during = [t for t in ok_times if t0 <= t <= t1]
    gaps = [b - a for a, b in zip(ok_times, ok_times[1:]) if b >= t0 and a <= t1]
    pause = max(gaps) if gaps else None
    print(f"\nonline resync: {t1 - t0:.1f}s, {len(during)} writes acknowledged during it, "
          f"{len(failures)} failed attempts {[f[1] for f in failures[:2]]}, longest gap between acknowledged writes {pause:.2f}s "
          f"(client connects per write every 50 ms)")
    assert len(during) > 0                           # the application kept working
    for h in ("db01", "db02"):                       # every acknowledged write is on both
        got = q("SELECT count(*) FROM sync_load WHERE note = %s", h, (marker,))[0][0]
        assert got == len(acked), (h, got, len(acked))
    assert_rows_on_both(marker, len(ids))
    assert_healthy(inv)


# --------------------------------------------------------------------------- faults


@pytest.fixture(scope="module")
def big(lab):
    """A table big enough (~90 MB) that dump and import take seconds: faults can hit them."""
    q("DROP TABLE IF EXISTS sync_big")
    q("CREATE TABLE sync_big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS v "
      "FROM generate_series(1, 1200000) AS g")
    yield
    q("DROP TABLE IF EXISTS sync_big")


def test_source_killed_during_dump_then_rollback(inv, big):
    source, _ = degenerate(inv, "db02", f"srckill-{time.time():.0f}")
    target = "db02"
    before = kept_dirs(target)
    proc = popen_inv(inv, "sync.resync", "--yes")
    wait_for("pg_dumpall on the source", lambda: pids_of(source, "pg_dumpall"), 120, 0.1)
    kill_postmaster(source)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, out
    assert "pg_dumpall of the source failed" in err and "the target was not touched" in err, err
    assert kept_dirs(target) == before                  # target untouched
    assert "keep_datadir" not in journal_steps(inv.state_dir)
    assert ssh(target, f"test -f {PGDATA}/PG_VERSION && echo ok").strip() == "ok"
    inv("sync.rollback", "--yes", timeout=300)          # source back on 5432, pgpool started
    data = pool(inv)
    assert {b["host"]: b["status"] for b in data["backends"]} == {source: "up", target: "down"}  # as before
    inv("sync.resync", "--yes", timeout=600)
    assert_healthy(inv)


def test_target_killed_during_import_then_resume(inv, big):
    source, ids = degenerate(inv, "db01", f"tgtkill-{time.time():.0f}")
    target = "db01"
    before = kept_dirs(target)
    proc = popen_inv(inv, "sync.resync", "--yes")
    wait_for("the import on the target", lambda: "import" not in journal_steps(inv.state_dir)
             and "start_target_maint" in journal_steps(inv.state_dir) and importing(target), 180, 0.1)
    kill_postmaster(target)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, out
    assert "stopped at the first error" in err and "old data directory is kept" in err, err
    new = sorted(set(kept_dirs(target)) - set(before))
    assert len(new) == 1
    assert ssh(target, f"test -f {PGDATA}/../{new[0]}/PG_VERSION && echo ok").strip() == "ok"
    res = inv("sync.resume", "--yes", timeout=600)
    assert "redoing" in res.stdout and "resync resumed and done" in res.stdout
    assert kept_dirs(target) == sorted(before + new)
    assert_healthy(inv)


def test_rollback_after_failed_import_restores_the_cluster(inv, big):
    marker = f"rollback-{time.time():.0f}"
    source, ids = degenerate(inv, "db02", marker)
    target = "db02"
    target_rows = q("SELECT count(*) FROM sync_lab", target)[0][0]
    before = kept_dirs(target)
    proc = popen_inv(inv, "sync.resync", "--yes")
    wait_for("the import on the target", lambda: "start_target_maint" in journal_steps(inv.state_dir)
             and importing(target), 180, 0.1)
    kill_postmaster(target)
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    inv("sync.rollback", "--yes", timeout=300)
    # as before the resync: pgpool up and degenerated away from the target, the target's own data back
    data = pool(inv)
    assert {b["host"]: b["status"] for b in data["backends"]} == {source: "up", target: "down"}
    assert q("SELECT count(*) FROM sync_lab", target)[0][0] == target_rows
    assert q("SELECT count(*) FROM sync_lab WHERE marker = %s", target, (marker,))[0][0] == 0
    assert len(kept_dirs(target)) == len(before) + 1    # the unfinished copy is kept as data.failed-*
    assert any(".failed-" in d for d in set(kept_dirs(target)) - set(before))
    res = inv("sync.resume", "--yes", check=False)
    assert res.returncode != 0 and "rolled back" in res.stderr
    inv("sync.resync", "--yes", timeout=600)
    assert_rows_on_both(marker, len(ids))
    assert_healthy(inv)


def test_sigint_then_resume_and_second_resync_locked(inv, big):
    source, ids = degenerate(inv, "db01", f"sigint-{time.time():.0f}")
    proc = popen_inv(inv, "sync.resync", "--method", "basebackup", "--yes")
    wait_for("the first resync to start", lambda: "stop_pgpool" in journal_steps(inv.state_dir), 120)
    second = inv("sync.resync", "--yes", check=False)
    assert second.returncode == 5 and "locked" in second.stderr, second.stderr
    wait_for("the target's data dir to be kept", lambda: "keep_datadir" in journal_steps(inv.state_dir), 120, 0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    steps = journal_steps(inv.state_dir)
    assert "verify_pool" not in steps
    res = inv("sync.resume", "--yes", timeout=600)
    assert "resync resumed and done" in res.stdout
    assert_healthy(inv)


def test_cleanup_archives_dumps_and_removes_a_kept_dir_only_by_name(inv):
    source, _ = degenerate(inv, "db02", f"cleanup-{time.time():.0f}")
    inv("sync.resync", "--yes", timeout=600)
    assert ssh(source, "ls /var/lib/postgresql/hatasks-resync").split()   # the dumps and logs are there
    status = json.loads(inv("sync.status", "--format", "json").stdout)
    kept = status["resync"]["kept"].rsplit("/", 1)[1]
    archive = f"/var/lib/postgresql/hatasks-archive-{time.time():.0f}"
    inv("sync.cleanup", "--archive", archive, "--yes")
    assert ssh(source, "ls /var/lib/postgresql/hatasks-resync").split() == []
    tars = ssh(source, f"stat -c '%a %n' {archive}/*.tar.gz").splitlines()
    assert tars and all(t.startswith("600 ") for t in tars), tars
    assert kept in kept_dirs("db02")                                     # never removed unless named
    bad = inv("sync.cleanup", "--remove-datadir", "base", "--yes", check=False)
    assert bad.returncode == 2 and "not a data dir kept by hatasks" in bad.stderr
    inv("sync.cleanup", "--remove-datadir", kept, "--host", "db02", "--yes")
    assert kept not in kept_dirs("db02")
    ssh(source, f"rm -rf {archive}")
    assert_healthy(inv)
