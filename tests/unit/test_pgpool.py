"""pgpool tasks: exact pcp/pgpool/crm_resource commands, node resolution, refusals, newest-data
records, the config-check script. The network is the shared FakeRemote (tests/unit/conftest.py):
SHOW pool_nodes and the row counts are answered as the lab's pgpool and PostgreSQL answer them."""

import json
import subprocess

import invoke
import pytest

from hatasks import backends, journal, newest, pgpool, pool, remote
from hatasks.errors import HaError, UnreachableError

import dbsim
from conftest import FIXTURES, Seq, psql_rows, query_text

CAPTURES = FIXTURES / "captures"
COLUMNS = pool.POOL_NODES_COLUMNS[14]


def at_rows(text):
    """Rows of `psql -At -c 'SHOW pool_nodes'` as remote.sql_rows returns them."""
    return [dict(zip(COLUMNS, ln.split("|"))) for ln in text.strip().splitlines()]


BOTH_UP = psql_rows((FIXTURES / "lab-samples" / "show_pool_nodes.txt").read_text())
DB02_DOWN = at_rows(
    "0|db01|5432|up|up|0.500000|main|main|0|true|0|||2026-11-25 16:46:59\n"
    "1|db02|5432|down|up|0.500000|replica|replica|0|false|0|||2026-11-25 16:47:11\n")
DB01_DOWN = at_rows(
    "0|db01|5432|down|up|0.500000|replica|replica|0|false|0|||2026-11-25 16:46:59\n"
    "1|db02|5432|up|up|0.500000|main|main|0|true|0|||2026-11-25 16:47:11\n")


@pytest.fixture
def rec(fake):
    """The FakeRemote answering pcp commands as the real tools do on success."""
    fake.on(lambda host, cmd: True, (0, ""))
    fake.on(lambda host, cmd: cmd.startswith("pcp_") and "pcp_node_info" not in cmd,
            lambda host, cmd: (0, f"{cmd.split()[0]} -- Command Successful\n"))
    return fake


def use_pool(fake, *views):
    """Successive SHOW pool_nodes answers (rows, or an error to raise); the last one repeats."""
    fake.sql("SHOW pool_nodes", Seq(views))
    return fake


def pool_reads(fake):
    return sum(1 for q in fake.queries if q.query == "SHOW pool_nodes")


def use_counts(fake, per_host):
    """Each backend answers the row-count queries from {host: {db: {"schema.table": n}}}."""
    def answer(q):
        dbs = per_host[q.host]
        text = query_text(q.query)
        if text.startswith("SELECT datname"):
            return [{"datname": db} for db in dbs]
        if text.startswith("SELECT n.nspname"):
            return [{"nspname": t.split(".")[0], "relname": t.split(".")[1]} for t in dbs[q.dbname]]
        table = text.split(" FROM ")[1].replace('"', "")
        return [{"count": dbs[q.dbname][table]}]

    fake.sql(lambda host, text: "pool_nodes" not in text, answer)


# ------------------------------------------------------------------ commands


def test_pcp_command_uses_pcppass_and_no_password(ctx):
    c = remote.inventory(ctx).cluster("db")
    assert pgpool.pcp_command(c, "detach_node", 1) == (
        "pcp_detach_node -h 10.231.0.100 -p 9898 -U postgres -w -n 1")
    assert pgpool.pcp_command(c, "recovery_node", 0) == (
        "pcp_recovery_node -h 10.231.0.100 -p 9898 -U postgres -w -n 0")


@pytest.mark.parametrize("node,side,host,node_id", [
    ("db02", None, "db02", 1), ("1", None, "db02", 1), ("0", None, "db01", 0),
    (None, "master", "db01", 0), (None, "secondary", "db02", 1),
])
def test_resolve_node(ctx, node, side, host, node_id):
    h, nid = pgpool.resolve_node(ctx, node, side)
    assert (h.name, nid) == (host, node_id)


def test_switch_detaches_records_newest_and_verifies(ctx, rec):
    use_pool(rec, BOTH_UP, DB02_DOWN)
    dbsim.serve(rec, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))})
    pgpool.switch_task(ctx, side="secondary", yes=True)
    assert rec.commands == ["pcp_detach_node -h 10.231.0.100 -p 9898 -U postgres -w -n 1"]
    assert rec.calls[0].user == "postgres"
    newest = journal.newest(ctx, "db")
    assert newest["newest"] == "db01"
    assert newest["evidence"]["in_sync"] is False
    assert "db02(node 1) down" in newest["evidence"]["pool_nodes"]
    events = [(r["action"], r["event"]) for r in journal.history(ctx)]
    assert ("pgpool.switch", "start") in events and ("pgpool.switch", "done") in events
    # its write position as it left replication: WAL position and table fingerprints
    left = [r for r in journal.history(ctx) if r["event"] == "left"]
    assert [r["backend"] for r in left] == ["db02"]
    assert left[0]["position"]["lsn"] and left[0]["digests"]["GYOM_DB"]["public.t"][0] == 1


def test_detach_alias_exists():
    coll = invoke.Collection.from_module(pgpool)
    assert coll["detach"] is coll["switch"]


def test_switch_refuses_last_up_backend(ctx, rec):
    use_pool(rec, DB02_DOWN)
    with pytest.raises(invoke.Exit) as exc:
        pgpool.switch_task(ctx, node="db01", yes=True)
    assert exc.value.code == HaError.REFUSED
    assert rec.calls == []


def test_switch_not_converged_when_backend_stays_up(ctx, rec):
    use_pool(rec, BOTH_UP)
    with pytest.raises(invoke.Exit) as exc:
        pgpool.switch_task(ctx, node="db02", timeout=1, yes=True)
    assert exc.value.code == HaError.NOT_CONVERGED


def test_attach_refused_when_contents_differ(ctx, rec):
    """Detached db02 missed a write: attaching it would serve stale reads. Refused, nothing sent."""
    use_pool(rec, DB02_DOWN)
    dbsim.serve(rec, {"db01": dbsim.same((1, "a"), (2, "b")), "db02": dbsim.same((1, "a"))})
    with pytest.raises(invoke.Exit) as exc:
        pgpool.attach_task(ctx, node="1", yes=True)
    assert exc.value.code == HaError.REFUSED
    assert "pcp_attach_node" not in " ".join(rec.commands)
    assert not [r for r in journal.history(ctx) if r["event"] == "stale_attach"]


def test_attach_forced_is_journaled_stale_and_not_in_sync(ctx, rec, capsys):
    use_pool(rec, DB02_DOWN, BOTH_UP)
    dbsim.serve(rec, {"db01": dbsim.same((1, "a"), (2, "b")), "db02": dbsim.same((1, "a"))})
    pgpool.attach_task(ctx, node="1", force=True, yes=True)
    assert rec.commands == ["pcp_attach_node -h 10.231.0.100 -p 9898 -U postgres -w -n 1"]
    assert "attached WITHOUT resync" in capsys.readouterr().err
    assert journal.stale_attached(ctx, "db") == ["db02"]
    # every backend up again, but nothing proved them equal: not recorded as in sync
    r = newest.record_newest(ctx, "db", "test")
    assert r["evidence"]["in_sync"] is False and r["newest"] == "db01"
    assert r["evidence"]["stale_attach"] == ["db02"]


def test_stale_attach_ends_with_proof_of_equality(ctx, rec):
    use_pool(rec, DB02_DOWN, BOTH_UP)
    dbsim.serve(rec, {"db01": dbsim.same((1, "a"), (2, "b")), "db02": dbsim.same((1, "a"))})
    pgpool.attach_task(ctx, node="1", force=True, yes=True)
    journal.Journal(ctx).write("equal", "db", "equal", {}, backends=["db01", "db02"], proof="t")
    assert journal.stale_attached(ctx, "db") == []


def test_attach_with_equal_contents_says_so(ctx, rec, capsys):
    use_pool(rec, DB02_DOWN, BOTH_UP)
    dbsim.serve(rec, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))})
    pgpool.attach_task(ctx, node="db02", yes=True)
    assert rec.commands == ["pcp_attach_node -h 10.231.0.100 -p 9898 -U postgres -w -n 1"]
    out = capsys.readouterr()
    assert "db02: contents equal" in out.out and out.err == ""
    assert journal.stale_attached(ctx, "db") == []


SWAPPED = """
[db]
db01 ansible_host=10.231.0.11 pgpool_node_id=1
db02 ansible_host=10.231.0.12 pgpool_node_id=0
[db:vars]
cluster_kind=db
vip=10.231.0.100
pg_port=5432
pgdata=/var/lib/postgresql/15/data
pg_bindir=/usr/lib/postgresql/15/bin
"""


@pytest.mark.parametrize("call", [
    lambda c: pgpool.switch_task(c, node="db02", yes=True),
    lambda c: pgpool.attach_task(c, node="db02", yes=True),
    lambda c: pgpool.recover_task(c, node="db02", yes=True),
])
def test_swapped_node_ids_refused_naming_both(tmp_path, rec, call):
    """The inventory says db02 is node 0; pgpool says node 0 is db01: nothing is sent."""
    from conftest import make_ctx
    inv = tmp_path / "hosts.ini"
    inv.write_text(SWAPPED)
    c = make_ctx(tmp_path, inventory=str(inv))
    use_pool(rec, BOTH_UP)
    with pytest.raises(invoke.Exit) as exc:
        call(c)
    assert exc.value.code == HaError.STATE
    assert not [x for x in rec.commands if x.startswith("pcp_")]


def test_id_disagreements_name_both_sides(ctx):
    c = remote.inventory(ctx).cluster("db")
    assert backends.id_disagreements(c, pool.parse_pool_nodes(BOTH_UP)) == []
    swapped = [dict(r, hostname={"db01": "db02", "db02": "db01"}[r["hostname"].strip()])
               for r in BOTH_UP]
    lines = backends.id_disagreements(c, pool.parse_pool_nodes(swapped))
    assert "inventory: db01 is pgpool node 0; pgpool: node 0 is db02:5432" in lines
    assert "inventory: db02 is pgpool node 1; pgpool: node 1 is db01:5432" in lines
    wrong_port = [dict(r, port="5433") if r["hostname"].strip() == "db02" else r for r in BOTH_UP]
    lines = backends.id_disagreements(c, pool.parse_pool_nodes(wrong_port))
    assert any("node 1 is db02:5433" in ln for ln in lines)


def test_recover_detaches_attached_node_first(ctx, rec):
    use_pool(rec, BOTH_UP, BOTH_UP, DB02_DOWN, DB02_DOWN, BOTH_UP)
    dbsim.serve(rec, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))})
    pgpool.recover_task(ctx, node="db02", yes=True)
    rec_ = journal.newest(ctx, "db")
    assert rec_["evidence"]["in_sync"] is True and "rebuilt" in rec_["evidence"]["reason"]
    assert rec.commands == [
        "pcp_detach_node -h 10.231.0.100 -p 9898 -U postgres -w -n 1",
        "pcp_recovery_node -h 10.231.0.100 -p 9898 -U postgres -w -n 1",
    ]


def test_recover_refuses_a_target_with_writes_the_main_lacks(ctx, rec):
    """db02 took a write db01 lacks (split brain): refused, salvage kept, nothing rebuilt."""
    use_pool(rec, DB02_DOWN)
    dbsim.serve(rec, {"db01": dbsim.same((1, "a"), (2, "b")),
                      "db02": dbsim.same((1, "a"), (3, "s1"))})
    with pytest.raises(invoke.Exit) as exc:
        pgpool.recover_task(ctx, node="db02", yes=True)
    assert exc.value.code == HaError.STATE
    assert not [x for x in rec.commands if x.startswith("pcp_")]
    sv = [r for r in journal.history(ctx) if r["event"] == "salvage"]
    assert len(sv) == 1 and sv[0]["backend"] == "db02"
    text = open(sv[0]["local"]).read()
    assert '"s1"' in text and '"b"' not in text


def test_recover_fails_when_counts_differ(ctx, rec):
    use_pool(rec, DB02_DOWN, BOTH_UP)
    dbsim.serve(rec, {"db01": dbsim.same((1, "a"), (2, "b")), "db02": dbsim.same((1, "a"))})
    with pytest.raises(invoke.Exit) as exc:
        pgpool.recover_task(ctx, node="db02", yes=True)
    assert exc.value.code == HaError.NOT_CONVERGED


# ------------------------------------------------------------------ status and the newest record


def test_status_degenerated_records_newest(ctx, fake, capsys):
    use_pool(fake, DB01_DOWN)
    with pytest.raises(invoke.Exit) as exc:  # degenerated is unhealthy: exit 3, JSON shown
        pgpool.status_task(ctx, format="json")
    assert exc.value.code == HaError.STATE
    out = capsys.readouterr()
    assert out.err == "hatasks: error: pgpool is degenerated (backend down: db01); newest data: db02\n"
    data = json.loads(out.out)
    assert data["degenerated"] is True and data["newest"] == "db02"
    assert data["recorded"]["newest"] == "db02"
    assert journal.newest(ctx, "db")["evidence"]["degenerated"] is True


def test_status_in_sync_records_nothing(ctx, fake, capsys):
    use_pool(fake, BOTH_UP)
    pgpool.status_task(ctx, format="json")
    assert json.loads(capsys.readouterr().out)["degenerated"] is False
    assert journal.newest(ctx, "db") is None


def test_status_pgpool_down_shows_recorded_value_and_fails(ctx, fake, capsys):
    journal.record_newest(ctx, "db", "db02", {"source": "test"})
    use_pool(fake, UnreachableError("connection refused"))
    with pytest.raises(invoke.Exit) as exc:
        pgpool.status_task(ctx)
    assert exc.value.code == HaError.STATE
    out = capsys.readouterr()
    assert "recorded newest" in out.out and "db02" in out.out
    assert "recorded newest backend: db02" in out.err


def test_record_newest_in_sync(ctx, fake):
    use_pool(fake, BOTH_UP)
    res = newest.record_newest(ctx, "db", "hb.stop on db01")
    assert res["newest"] == "db01" and res["evidence"]["in_sync"] is True
    assert journal.newest(ctx, "db")["evidence"]["reason"] == "hb.stop on db01"


def test_record_newest_pgpool_down_keeps_previous(ctx, fake):
    journal.record_newest(ctx, "db", "db01", {"source": "earlier"})
    use_pool(fake, UnreachableError("down"))
    res = newest.record_newest(ctx, "db", "x")
    assert res["recorded"] is False and res["previous"]["newest"] == "db01"


# ------------------------------------------------------------------ stop / start


def test_stop_records_then_maintenance_then_pgpool_stop(ctx, rec, monkeypatch):
    use_pool(rec, BOTH_UP)
    listen = iter([True, False])
    monkeypatch.setattr(pgpool, "listening", lambda ctx, host, port: next(listen))
    monkeypatch.setattr(pgpool, "resource_state", lambda ctx, c: {
        "id": "pgpool", "node": "db02", "role": "Started", "managed": True})
    pgpool.stop_task(ctx, host="db02", mode="immediate", yes=True)
    assert rec.commands == [
        "crm_resource --resource pgpool --meta --set-parameter maintenance --parameter-value true",
        pgpool.stop_command("/usr/sbin/pgpool", "/etc/pgpool2/pgpool.conf", "immediate"),
    ]
    assert [c.user for c in rec.calls] == ["root", "postgres"]
    assert journal.newest(ctx, "db")["evidence"]["reason"] == "pgpool.stop on db02"


def test_stop_of_a_stray_copy_leaves_the_resource_alone(ctx, rec, monkeypatch):
    use_pool(rec, BOTH_UP)
    listen = iter([True, False])
    monkeypatch.setattr(pgpool, "listening", lambda ctx, host, port: next(listen))
    monkeypatch.setattr(pgpool, "resource_state", lambda ctx, c: {
        "id": "pgpool", "node": "db01", "role": "Started", "managed": True})
    pgpool.stop_task(ctx, host="db02", yes=True)
    assert rec.commands == [pgpool.stop_command("/usr/sbin/pgpool", "/etc/pgpool2/pgpool.conf", "fast")]


def test_stop_that_leaves_pgpool_listening_names_who_listens(ctx, rec, monkeypatch):
    """pgpool still on its port after the stop (CI saw it once, 60 s long): the error says
    which processes hold the port, from ss -ltnp, for the operator to look at."""
    use_pool(rec, BOTH_UP)
    monkeypatch.setattr(pgpool, "listening", lambda ctx, host, port: True)
    monkeypatch.setattr(pgpool, "resource_state", lambda ctx, c: {
        "id": "pgpool", "node": "db02", "role": "Started", "managed": True})

    def still(ctx, host, port, want, timeout):
        raise HaError(f"{host.name}: expected pgpool not listening on port {port} within "
                      f"{timeout}s; it is listening", HaError.NOT_CONVERGED)

    monkeypatch.setattr(pgpool, "wait_listening", still)
    users = ",".join(f'("pgpool",pid={p},fd=4)' for p in (17260, 17194, 17241, 17242, 17243))
    rec.on(lambda host, cmd: cmd.startswith("ss -Hltnp"),
           (0, f"LISTEN 0 32 0.0.0.0:9999 0.0.0.0:* users:({users})\n"))
    with pytest.raises(HaError) as exc:
        pgpool.stop(ctx, "db02")
    assert exc.value.code == HaError.NOT_CONVERGED
    assert exc.value.message.endswith("it is listening: still listening: pgpool pid 17194, "
                                      "17241, 17242, 17243, ... (5 in all)")


def test_start_refuses_second_copy(ctx, rec, monkeypatch):
    monkeypatch.setattr(pgpool, "resource_state", lambda ctx, c: {
        "node": "db01", "role": "Started", "managed": True})
    monkeypatch.setattr(pgpool, "maintenance_set", lambda ctx, h, rid: False)
    monkeypatch.setattr(pgpool, "listening", lambda *a: False)
    with pytest.raises(invoke.Exit) as exc:
        pgpool.start_task(ctx, host="db02", yes=True)
    assert exc.value.code == HaError.STATE
    assert rec.calls == []


def test_start_hands_back_to_pacemaker(ctx, rec, monkeypatch):
    monkeypatch.setattr(pgpool, "resource_state", lambda ctx, c: {
        "node": "db02", "role": "Started", "managed": False})
    monkeypatch.setattr(pgpool, "maintenance_set", lambda ctx, h, rid: True)
    monkeypatch.setattr(pgpool, "vip_node", lambda ctx, c: "db02")
    monkeypatch.setattr(pgpool, "listening", lambda *a: True)
    states = iter([{"id": "pgpool", "node": None, "role": "Stopped", "managed": True},
                   {"id": "pgpool", "node": "db02", "role": "Started", "managed": True}])
    monkeypatch.setattr(pgpool, "wait_resource", lambda ctx, c, ok, what, t: next(states))
    pgpool.start_task(ctx, host="db02", yes=True)
    assert rec.commands == [
        "crm_resource --resource pgpool --meta --set-parameter target-role --parameter-value Stopped",
        "crm_resource --resource pgpool --meta --delete-parameter maintenance",
        "crm_resource --resource pgpool --meta --delete-parameter target-role",
    ]


# ------------------------------------------------------------------ check


def test_check_refused_where_pgpool_runs(ctx, rec, monkeypatch):
    monkeypatch.setattr(pgpool, "running_on", lambda ctx, c: ["db01"])
    with pytest.raises(invoke.Exit) as exc:
        pgpool.check_task(ctx, host="db01")
    assert exc.value.code == HaError.REFUSED
    assert rec.calls == []


def test_check_script_overrides_everything_that_could_collide(ctx):
    script = pgpool.check_script(remote.inventory(ctx).cluster("db"), 10)
    assert "conf=/etc/pgpool2/pgpool.conf; wait_s=10; port=29999; pcp_port=29898" in script
    for key in ("pid_file_name", "socket_dir", "pcp_socket_dir", "logdir", "memqcache_oiddir",
                "use_watchdog = off", "health_check_period = 0", "failover_command = ''",
                "listen_addresses = 'localhost'"):
        assert key in script
    assert "-n -D -f" in script
    r = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("fixture,ok,error", [
    ("pgpool_n_started_sigint.txt", True, None),
    ("pgpool_n_invalid_port.txt", False, 'FATAL:  invalid value for parameter "port": "abc"'),
    ("pgpool_n_out_of_range.txt", False, "outside the valid range"),
    ("pgpool_n_missing_config.txt", False, "could not open configuration file"),
])
def test_parse_check(fixture, ok, error):
    text = (CAPTURES / fixture).read_text()
    result = "started" if "successfully started" in text else "exited"
    data = pgpool.parse_check(f"@@result {result}\n@@rc 0\n@@port 29999\n" + text)
    assert data["ok"] is ok
    if error:
        assert error in data["errors"][0]


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("call", [
    lambda c: pgpool.switch_task(c, yes=True),
    lambda c: pgpool.switch_task(c, node="db01", side="master", yes=True),
    lambda c: pgpool.switch_task(c, side="primary", yes=True),
    lambda c: pgpool.switch_task(c, node="7", yes=True),
    lambda c: pgpool.switch_task(c, node="lb01", yes=True),
    lambda c: pgpool.switch_task(c, node="db01`id`", yes=True),
    lambda c: pgpool.attach_task(c, node="db3", yes=True),
    lambda c: pgpool.recover_task(c, node="$(reboot)", yes=True),
    lambda c: pgpool.stop_task(c, host="db01", mode="kill", yes=True),
    lambda c: pgpool.stop_task(c, host="lb02", yes=True),
    lambda c: pgpool.start_task(c, host="nosuch", yes=True),
    lambda c: pgpool.check_task(c, host="lb01"),
    lambda c: pgpool.check_task(c, host="db01", wait=0),
    lambda c: pgpool.status_task(c, format="csv"),
])
def test_bad_input_sends_nothing(ctx, rec, call, monkeypatch):
    with pytest.raises(invoke.Exit) as exc:
        call(ctx)
    assert exc.value.code == HaError.USAGE
    assert rec.calls == [] and rec.queries == []


# ------------------------------------------------------------------ --dry


def test_dry_switch_prints_pcp_and_changes_nothing(dry_ctx, fake, capsys):
    use_pool(fake, BOTH_UP)
    pgpool.switch_task(dry_ctx, node="db02")
    out = capsys.readouterr().out
    assert "[dry] db01 (as postgres): pcp_detach_node -h 10.231.0.100 -p 9898 -U postgres -w -n 1" in out
    assert pool_reads(fake) == 1 and fake.calls == []
    assert journal.history(dry_ctx) == [] and journal.newest(dry_ctx, "db") is None


def test_dry_stop_prints_maintenance_and_stop(dry_ctx, fake, monkeypatch, capsys):
    use_pool(fake, BOTH_UP)
    monkeypatch.setattr(pgpool, "listening", lambda *a: True)
    monkeypatch.setattr(pgpool, "resource_state", lambda ctx, c: {
        "id": "pgpool", "node": "db01", "role": "Started", "managed": True})
    pgpool.stop_task(dry_ctx, host="db01", mode="smart")
    out = capsys.readouterr().out
    assert ("[dry] db01 (as root): crm_resource --resource pgpool --meta --set-parameter "
            "maintenance --parameter-value true") in out
    assert ("[dry] db01 (as postgres): conf=/etc/pgpool2/pgpool.conf; " in out
            and '/usr/sbin/pgpool -f "$conf" -m smart stop &' in out)
    assert journal.history(dry_ctx) == [] and fake.calls == []


def test_unparsable_pool_nodes_is_a_state_error(ctx, fake):
    fake.sql("SHOW pool_nodes", [])
    with pytest.raises(HaError) as exc:
        backends.read_pool_nodes(ctx, "db")
    assert exc.value.code == HaError.STATE and "not understood" in exc.value.message


def test_recovery_that_exits_0_with_an_error_is_a_failure(ctx, fake):
    """pgpool-II 4.3's pcp_recovery_node exits 0 when a stage fails (seen on the lab)."""
    fake.on("pcp_recovery_node", (0, 'ERROR:  executing recovery, execution of command '
                                     'failed at "1st stage"\n'))
    use_pool(fake, DB02_DOWN)
    dbsim.serve(fake, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))})
    host = remote.inventory(ctx).host("db02")
    with pytest.raises(HaError) as exc:
        pgpool.recover(ctx, host, 1)
    assert exc.value.code == HaError.STATE
    assert "1st stage" in exc.value.message


def test_online_resync_waits_for_an_earlier_attempts_recovery_instead_of_starting_another(
        ctx, fake, monkeypatch):
    """chaos seed 11 step 6 (replayed with seed 21 step 1): sync.resync --method online killed
    by SIGKILL during pcp_recovery_node; the recovery went on inside pgpool and attached the
    target, while db.recover's sync.resume detached it and started a second recovery over it
    (an attached copy then lacked 25 acknowledged writes). Now the resumed step waits for the
    running recovery to end, and starts none when it left the target up."""
    from hatasks import syncsteps
    monkeypatch.setattr(syncsteps.time, "sleep", lambda s: None)
    busy = {"db01": [(0, "1\n"), (0, "1\n"), (1, "0\n")], "db02": []}
    fake.on(lambda host, cmd: cmd == syncsteps.RECOVERY_BUSY,
            lambda host, cmd: busy[host].pop(0) if busy[host] else (1, "0\n"))
    fake.on("hatasks-kept", (0, "/var/lib/postgresql/15/data.2026-11-30-215256\n"))
    use_pool(fake, BOTH_UP)
    p = {"cluster": "db", "target": "db02", "source": "db01",
         "pgdata": "/var/lib/postgresql/15/data", "timeout": 60}
    out = syncsteps.recover_online(ctx, p, {})
    assert out["kept"] == "/var/lib/postgresql/15/data.2026-11-30-215256"
    sent = [c.command for c in fake.calls]
    assert sent.count(syncsteps.RECOVERY_BUSY) >= 3  # waited while it ran
    assert not [c for c in sent if "pcp_recovery_node" in c or "pcp_detach_node" in c]
    # no recovery running: the step runs its own pcp_recovery_node as before
    fake.calls.clear()
    fake.on("pcp_recovery_node", (0, "pcp_recovery_node -- Command Successful\n"))
    fake.sql("pg_replication_slots", [{"n": 0}])
    fake.on("du -sB1", (0, "1048576\n"))   # the copy's size, for the journal's figures
    fake.on("standby.signal", (1, ""))      # no standby copy left by an earlier attempt
    use_pool(fake, DB02_DOWN, BOTH_UP)
    syncsteps.recover_online(ctx, p, {})
    sent = [c.command for c in fake.calls]
    assert sent.count(syncsteps.RECOVERY_BUSY) == 2  # one look on each host
    assert [c for c in sent if "pcp_recovery_node" in c]


@pytest.mark.parametrize("conf,refused", [
    ("recovery_timeout = 90\nclient_idle_limit_in_recovery = 5\n", True),
    ("recovery_timeout = 90\n", True),  # unset: pgpool's default 0 (wait for clients to leave)
    ("client_idle_limit_in_recovery = 5\n#x\nclient_idle_limit_in_recovery = -1\n", False),
])
def test_online_resync_needs_every_client_disconnected_at_the_2nd_stage(ctx, fake, conf, refused):
    """chaos seed 21 step 1: pgpool-II 4.3 waited recovery_timeout for a busy client, then
    reset its counter ("malformed conn_counter (1) detected") and ran the 2nd stage with the
    client still writing: 25 acknowledged writes reached only the source while the target was
    promoted and attached. Only client_idle_limit_in_recovery = -1 prevents that."""
    from hatasks import sync
    fake.on("cat /etc/pgpool2/pgpool.conf", (0, conf))
    p = {"cluster": "db", "target": "db02", "source": "db01", "method": "online"}
    if refused:
        with pytest.raises(HaError) as exc:
            sync.check_idle_limit(ctx, p)
        assert exc.value.code == HaError.REFUSED
        assert "client_idle_limit_in_recovery" in exc.value.message and "-1" in exc.value.message
    else:
        sync.check_idle_limit(ctx, p)


def test_resync_resumed_after_a_sigint_inside_stop_pgpool_starts_pgpool_at_its_end(
        ctx, fake, monkeypatch):
    """chaos seed 3 step 1 (CI seed, 22:01 run): SIGINT landed in the stop_pgpool step after
    pgpool was stopped and before its checkpoint; the resumed step found pgpool not running,
    said "nothing to stop", and start_pgpool then left it stopped (attach failed: pgpool does
    not answer; db.recover exit 4 twice; a hand repair restarted it). A resource left in
    maintenance by a pgpool.stop means stopped by us: it is started again at the end."""
    from hatasks import syncsteps
    monkeypatch.setattr(syncsteps, "pool_host", lambda ctx, c: None)
    states = {"left": {"id": "pgpool", "node": "db01", "role": "Started", "managed": False,
                       "maintenance": True},
              "stopped": {"id": "pgpool", "node": None, "role": "Stopped", "managed": True,
                          "maintenance": False}}
    seen = []
    monkeypatch.setattr(syncsteps.pgpool, "resource_state", lambda ctx, c: states[seen[-1]])
    p = {"cluster": "db", "source": "db01", "target": "db02"}
    seen.append("left")
    assert syncsteps.stop_pgpool(ctx, p, {}) == {"pgpool_stopped": True, "pgpool_host": "db01"}
    # not running and not stopped by a pgpool.stop (Pacemaker's business): nothing to restart
    seen.append("stopped")
    assert syncsteps.stop_pgpool(ctx, p, {}) == {"pgpool_stopped": False}
    assert fake.calls == []


def test_resumed_stop_pgpool_with_the_planned_host_already_stopped(ctx, fake, monkeypatch):
    """chaos seed 31 step 6 (fencing on, SIGINT to db.recover inside its resync's stop_pgpool):
    the plan named the host, pgpool.stop found nothing listening ("nothing to stop") and the
    resumed resync left pgpool down."""
    from hatasks import syncsteps
    monkeypatch.setattr(syncsteps.pgpool, "stop", lambda *a, **k: {"stopped": False})
    monkeypatch.setattr(syncsteps.pgpool, "resource_state", lambda ctx, c: {
        "id": "pgpool", "node": "db02", "role": "Started", "managed": False, "maintenance": True})
    p = {"cluster": "db", "source": "db02", "target": "db01", "pgpool_host": "db02"}
    assert syncsteps.stop_pgpool(ctx, p, {}) == {"pgpool_stopped": True, "pgpool_host": "db02"}


def test_resync_attach_step_proves_the_contents_first(ctx, fake):
    """chaos seed 31 step 6: pgpool was started by an operator's cleanup in the middle of the
    resync and served writes to the source alone; the attach step attached the target without
    a proof (the verify was before), 12 acknowledged writes were missing on it and db.recover
    said healthy. The attach step now proves equality; different contents: refused."""
    from hatasks import syncsteps
    use_pool(fake, DB01_DOWN)
    fake.on("status >/dev/null", (0, "rc=0\n"))   # db01's PostgreSQL runs: not started
    dbsim.serve(fake, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"), (2, "b"))})
    p = {"cluster": "db", "source": "db02", "target": "db01"}
    with pytest.raises(HaError) as exc:
        syncsteps.attach_backends(ctx, p, {"pgpool_stopped": True})
    assert exc.value.code == HaError.REFUSED and "refusing to attach db01" in exc.value.message
    assert not [c for c in fake.calls if "pcp_attach_node" in c.command]


def test_stop_command_sends_pgpools_own_stop_and_returns_when_its_process_is_gone():
    """pgpool's stop checks its process once a second; the command waits on the pid file's
    process instead, and ends the stop command only once pgpool has exited."""
    cmd = pgpool.stop_command("/usr/sbin/pgpool", "/etc/pgpool2/pgpool.conf", "fast")
    assert '/usr/sbin/pgpool -f "$conf" -m fast stop & sp=$!' in cmd
    assert "pid_file_name" in cmd and '[ ! -d /proc/$pid ]; then kill $sp' in cmd
    # no pid read: the stop command itself is waited for, its exit status returned
    assert cmd.endswith("done; wait $sp")


FAKE_PGPOOL = """#!/bin/bash
# pgpool -f CONF -m MODE stop, as pgpool does it: signal the pid file's process, then check
# it now and then (here: it lingers 20 s more); a pid file whose process is gone is an
# error (exit 3)
pf=$(sed -n "s/^pid_file_name = '\\(.*\\)'/\\1/p" "$2")
pid=$(head -n 1 "$pf")
kill -0 "$pid" 2>/dev/null || { echo "pgpool: pid $pid in $pf is not running" >&2; exit 3; }
kill "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
sleep 20
"""


@pytest.mark.parametrize("alive", [True, False])
def test_stop_command_run_against_a_fake_pgpool(tmp_path, alive):
    """The script run here by bash: with a live pid it returns once that process is gone,
    not when the stop command ends (exit 0, the process gone); with a stale pid file it
    returns the stop command's own error, never a success that stopped nothing."""
    import subprocess
    import threading

    fake = tmp_path / "pgpool"
    fake.write_text(FAKE_PGPOOL)
    fake.chmod(0o755)
    pidfile, conf = tmp_path / "pgpool.pid", tmp_path / "pgpool.conf"
    conf.write_text(f"port = 9999\npid_file_name = '{pidfile}'\n")
    server = subprocess.Popen(["sleep", "60"])
    # reaped as soon as it ends, as init reaps pgpool (a zombie would look alive)
    threading.Thread(target=server.wait, daemon=True).start()
    try:
        if not alive:
            server.kill()
            server.wait()
        pidfile.write_text(f"{server.pid}\n")
        # within 10 s: the fake's stop command itself lingers 20 s after the process is gone
        res = subprocess.run(["bash", "-c", pgpool.stop_command(str(fake), str(conf), "fast")],
                             capture_output=True, text=True, timeout=10)
        if alive:
            assert res.returncode == 0, res.stderr
            assert server.wait(timeout=5) is not None   # signalled and gone
        else:
            assert res.returncode == 3
            assert f"pid {server.pid}" in res.stderr and "is not running" in res.stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
