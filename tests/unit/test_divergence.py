"""The proof before destruction (hatasks.divergence) and salvage files (hatasks.salvage), on
backends answered by tests/unit/dbsim.py through the FakeRemote: the queries are hatasks' own,
the conclusions drawn from what the backends answer."""

import json

import pytest

import dbsim
from hatasks import compare, divergence, journal, salvage, sync
from hatasks.errors import HaError, StateError


def record_left(ctx, contents):
    """db02 leaves replication now (as pgpool.detach journals it)."""
    return divergence.record_left(ctx, "db", "db02", "test: detached")


def test_diff_rows_by_key():
    src = {"[1]": ["h1", "r1"], "[2]": ["h2", "r2"], "[4]": ["h4", "r4"]}
    tgt = {"[1]": ["h1", "r1"], "[2]": ["hX", "rX"], "[3]": ["h3", "r3"]}
    assert divergence.diff_rows(src, tgt) == (["[3]"], ["[2]"], ["[4]"])


def test_diff_rows_without_key_counts_duplicates():
    src = {"a": [["a", "ra"]], "b": [["b", "rb"]]}
    tgt = {"a": [["a", "ra"], ["a", "ra"]], "c": [["c", "rc"]]}
    assert divergence.diff_rows(src, tgt, keyed=False) == (["a", "c"], [], ["b"])
    assert divergence.extra_rows(src, tgt, ["a", "c"], keyed=False) == ["ra", "rc"]


def test_clean_when_target_only_misses_the_sources_writes(ctx, fake):
    dbsim.serve(fake, {"db01": dbsim.same((1, "a"), (2, "b")), "db02": dbsim.same((1, "a"))})
    r = divergence.prove(ctx, "db", "db01", "db02")
    assert r["clean"] is True and r["tables"] == []


def test_split_brain_found_row_by_row(ctx, fake):
    dbsim.serve(fake, {"db01": dbsim.same((1, "a"), (2, "s2")),
                       "db02": dbsim.same((1, "a"), (3, "s1"))})
    r = divergence.prove(ctx, "db", "db01", "db02")
    assert r["clean"] is False
    [t] = r["tables"]
    assert (t["database"], t["table"], t["pk"]) == ("GYOM_DB", "public.t", ["id"])
    assert (t["target_only"], t["conflicts"], t["source_only"]) == (1, 0, 1)
    assert t["samples"]["target_only"] == ["[3]"]
    assert "1 row(s) only on db02, e.g. [3]" in divergence.describe(r, "db01", "db02")


def test_an_update_on_the_target_is_a_conflict(ctx, fake):
    dbsim.serve(fake, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "changed"))})
    r = divergence.prove(ctx, "db", "db01", "db02")
    assert not r["clean"] and r["tables"][0]["conflicts"] == 1


def test_recorded_position_unchanged_proves_clean_without_a_scan(ctx, fake):
    contents = dbsim.serve(fake, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))})
    record_left(ctx, contents)
    contents["db01"]["GYOM_DB"]["public.t"] = dbsim.table((1, "a"), (2, "b"))
    before = len(fake.queries)
    r = divergence.prove(ctx, "db", "db01", "db02")
    assert r["clean"] and "has not written anything since it left" in r["how"]
    assert not [q for q in fake.queries[before:] if "hashtext" in str(q.query)]


def test_source_updates_after_the_target_left_are_not_conflicts(ctx, fake):
    """The target's fingerprint is the one recorded when it left: the difference is the
    source's (an update there), even though its WAL moved (a restart)."""
    contents = dbsim.serve(fake, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))},
                           lsn={"db02": "0/100"})
    record_left(ctx, contents)
    contents["db01"]["GYOM_DB"]["public.t"] = dbsim.table((1, "updated on db01"))
    dbsim.serve(fake, contents, lsn={"db02": "0/200"})   # newest rules answer first
    # its WAL since it left holds a row change of a user table: the WAL alone proves nothing
    fake.on("pg_waldump", (0, USER_INSERT))
    r = divergence.prove(ctx, "db", "db01", "db02")
    assert r["clean"], r
    assert "has the fingerprint it had when it left" in r["how"]
    # the target then takes a write of its own in another table: only that one is its write;
    # the source's update of public.t is still not a conflict (its recorded fingerprint)
    contents["db02"]["GYOM_DB"]["public.u"] = dbsim.table((7, "own"))
    contents["db01"]["GYOM_DB"]["public.u"] = dbsim.table()
    r = divergence.prove(ctx, "db", "db01", "db02")
    assert not r["clean"] and "recorded fingerprints" in r["how"]
    assert [(x["table"], x["target_only"], x["conflicts"]) for x in r["tables"]] == [
        ("public.u", 1, 0)]


CHECKPOINT = ("rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, lsn: 0/50000060, "
              "prev 0/50000028, desc: CHECKPOINT_ONLINE redo 0/50000028; tli 1; online")
ANALYZE = ("rmgr: Heap        len (rec/tot):     54/   162, tx:        735, lsn: 0/0301A0B8, prev "
           "0/0301A080, desc: INSERT off 5 flags 0x00, blkref #0: rel 1663/16384/2619 blk 12 FPW\n"
           "rmgr: Btree       len (rec/tot):     64/    64, tx:        735, lsn: 0/0301A160, prev "
           "0/0301A0B8, desc: INSERT_LEAF off 40, blkref #0: rel 1663/16384/2696 blk 4\n"
           "rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/0301A1A0, prev "
           "0/0301A160, desc: COMMIT 2026-11-30 21:32:58.882595 UTC")
USER_INSERT = ("rmgr: Heap        len (rec/tot):     59/    59, tx:        736, lsn: 0/0301A1D0, prev "
               "0/0301A1A0, desc: INSERT off 2 flags 0x08, blkref #0: rel 1663/16384/16390 blk 0")


def test_wal_writes_lets_maintenance_through_and_stops_at_a_user_row():
    assert compare.wal_writes("") is None
    assert compare.wal_writes(CHECKPOINT + "\n" + ANALYZE) is None
    assert compare.wal_writes(ANALYZE + "\n" + USER_INSERT) == USER_INSERT
    # a commit whose transaction showed no catalog write (e.g. an unlogged table's insert)
    lone = ANALYZE.splitlines()[2].replace("tx:        735", "tx:        900")
    assert compare.wal_writes(lone) == lone
    # COPY, TRUNCATE, a sequence, anything not known: may write
    for desc in ("rmgr: Heap2       len (rec/tot): 1/1, tx: 7, lsn: 0/1, prev 0/0, desc: MULTI_INSERT "
                 "ntuples: 3, blkref #0: rel 1663/16384/16390 blk 0",
                 "rmgr: Sequence    len (rec/tot): 1/1, tx: 0, lsn: 0/1, prev 0/0, desc: LOG rel 1663/5/16400",
                 "rmgr: Heap        len (rec/tot): 1/1, tx: 7, lsn: 0/1, prev 0/0, desc: TRUNCATE nrelids 1"):
        assert compare.wal_writes(desc) == desc


def test_wal_writes_lets_only_statistics_through_of_the_catalogs():
    """VACUUM and ANALYZE write pg_statistic and update pg_class/pg_database in place; any
    other catalog write is a schema, role or function change a rebuild would undo."""
    def rec(desc, tx=801):
        return (f"rmgr: Heap        len (rec/tot): 1/1, tx: {tx}, lsn: 0/1, prev 0/0, "
                f"desc: {desc}")
    commit = ("rmgr: Transaction len (rec/tot): 34/34, tx: 801, lsn: 0/2, prev 0/1, "
              "desc: COMMIT 2026-11-30 21:32:58.882595 UTC")
    vacuum = rec("INPLACE off 8, blkref #0: rel 1663/16384/1259 blk 0") + "\n" + \
        rec("INPLACE off 3, blkref #0: rel 1664/0/1262 blk 0")
    assert compare.wal_writes(vacuum + "\n" + commit) is None
    # ALTER TABLE ... RENAME: an update of pg_class, not in place
    rename = rec("HOT_UPDATE off 8 xmax 801 flags 0x10 ; new off 9 xmax 0, "
                 "blkref #0: rel 1663/16384/1259 blk 0")
    assert compare.wal_writes(rename + "\n" + commit) == rename
    # GRANT / ALTER ROLE: pg_class relacl, pg_authid (1260)
    role = rec("UPDATE off 2 xmax 801 flags 0x00 ; new off 5 xmax 0, blkref #0: rel 1664/0/1260 blk 0")
    assert compare.wal_writes(role + "\n" + commit) == role
    # CREATE VIEW: pg_rewrite (2618) rows, no storage
    view = rec("INSERT off 4 flags 0x00, blkref #0: rel 1663/16384/2618 blk 3")
    assert compare.wal_writes(view + "\n" + commit) == view


def test_a_target_whose_wal_moved_only_by_maintenance_is_proven_without_a_scan(ctx, fake):
    contents = dbsim.serve(fake, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))},
                           lsn={"db02": "0/100"})
    record_left(ctx, contents)
    contents["db01"]["GYOM_DB"]["public.t"] = dbsim.table((1, "updated on db01"))
    dbsim.serve(fake, contents, lsn={"db02": "0/200"})
    fake.on("pg_waldump", (0, CHECKPOINT + "\n" + ANALYZE))
    before = len(fake.queries)
    r = divergence.prove(ctx, "db", "db01", "db02")
    assert r["clean"] and "nothing but maintenance" in r["how"], r
    assert "-s 0/100 -e 0/200" in [c for c in fake.commands if "pg_waldump" in c][-1]
    assert not [q for q in fake.queries[before:] if "hashtext" in str(q.query)]


def test_wal_that_cannot_be_read_falls_back_to_the_scan(ctx, fake):
    contents = dbsim.serve(fake, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))},
                           lsn={"db02": "0/100"})
    record_left(ctx, contents)
    dbsim.serve(fake, contents, lsn={"db02": "0/200"})
    fake.on("pg_waldump", (1, "", "pg_waldump: error: could not find file \"000000010000000000000000\""))
    r = divergence.prove(ctx, "db", "db01", "db02")
    assert r["clean"] and "has the fingerprint it had when it left" in r["how"], r


def test_unreadable_target_proves_nothing(ctx, fake):
    dbsim.serve(fake, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))})
    fake.down.add("db02")
    with pytest.raises(StateError) as exc:
        divergence.prove(ctx, "db", "db01", "db02")
    assert "cannot prove db02" in exc.value.message


def test_prove_clean_refuses_and_keeps_a_salvage_file(ctx, fake):
    fake.on(lambda host, cmd: True, (0, ""))
    dbsim.serve(fake, {"db01": dbsim.same((1, "a"), (2, "s2")),
                       "db02": dbsim.same((1, "a"), (3, "s1"))})
    with pytest.raises(StateError) as exc:
        salvage.prove_clean(ctx, "db", "db02", "db01", force=False, what="the test")
    msg = exc.value.message
    assert msg.startswith("split brain: refusing the test: db02 holds writes db01 lacks")
    assert "GYOM_DB public.t by id: 1 row(s) only on db02, e.g. [3]" in msg
    [rec] = [r for r in journal.history(ctx) if r["event"] == "salvage"]
    assert rec["remote"].startswith("/var/lib/postgresql/15/data.salvage-")
    text = open(rec["local"]).read()
    assert text.startswith("-- hatasks salvage: writes on db02 that db01 lacked")
    assert salvage.sections(text)[0][0] == "GYOM_DB"
    assert "json_populate_record" in text and '\\"v\\": \\"s1\\"' not in text and "s1" in text
    # the file went to db02, next to the data directory, as postgres
    sent = [c for c in fake.calls if "base64 -d" in c.command]
    assert sent and sent[0].host == "db02" and sent[0].user == "postgres"
    # the operator chose db01: the same proof goes on, the salvage kept again
    r = salvage.prove_clean(ctx, "db", "db02", "db01", force=False, chosen=True, what="the test")
    assert r["clean"] is False and "rows" not in r["tables"][0]


def test_salvage_sections():
    text = '-- hatasks salvage\n\\connect "GYOM_DB"\nINSERT 1;\n\\connect "a""b"\nINSERT 2;\n'
    assert salvage.sections(text) == [("GYOM_DB", "INSERT 1;"), ('a"b', "INSERT 2;")]


def test_resync_refused_on_split_brain_unless_the_source_was_chosen(ctx, fake, monkeypatch):
    """sync.resync proves before it plans: the journal names db01 the newest, db02 took a
    write db01 lacks: refused (exit 3) before any plan; with the operator's --source the
    plan is made and the proof's verdict travels with it."""
    fake.on(lambda host, cmd: True, (0, ""))
    monkeypatch.setattr(sync, "read_pool", lambda ctx, c: None)
    monkeypatch.setattr(sync, "pool_host", lambda ctx, c: "db01")
    monkeypatch.setattr(sync.pg, "connectable", lambda *a, **k: True)
    journal.record_newest(ctx, "db", "db01", {"in_sync": False, "pool_nodes": "db02 down"})
    dbsim.serve(fake, {"db01": dbsim.same((1, "a"), (2, "s2")),
                       "db02": dbsim.same((1, "a"), (3, "s1"))})
    with pytest.raises(StateError) as exc:
        sync.prepare(ctx)
    assert exc.value.code == HaError.STATE and "split brain" in exc.value.message
    p, plan = sync.prepare(ctx, source="db01", chosen=True)
    assert (p["source"], p["target"]) == ("db01", "db02") and p["proof"]["clean"] is False
    assert len([r for r in journal.history(ctx) if r["event"] == "salvage"]) == 2


def test_equal_record_ends_stale_attach(ctx):
    j = journal.Journal(ctx)
    j.write("stale_attach", "db", "stale_attach", {"host": "db02"}, backend="db02", why="t")
    assert journal.stale_attached(ctx, "db") == ["db02"]
    j.write("start", "db", "sync.resync", {})
    assert journal.stale_attached(ctx, "db") == ["db02"]
    j.write("done", "db", "sync.resync", {})
    assert journal.stale_attached(ctx, "db") == []
    assert json.dumps(journal.history(ctx))


@pytest.mark.parametrize("chosen,source,target", [("db02", "db02", "db01"), ("db01", "db01", "db02"),
                                                  (None, "db01", "db02")])
def test_db_recover_source_reaches_the_resync_as_the_chosen_winner(ctx, mocker, chosen, source,
                                                                   target):
    """After the proof refused (split brain the rules did not see), db.recover --source X
    makes X the source and tells sync.resync the operator chose it."""
    from hatasks import db, engine, remote, rules
    mocker.patch.object(engine, "wait_settled")
    resync = mocker.patch.object(sync, "resync")
    c = remote.inventory(ctx).cluster("db")
    plan_step = rules.step("sync.resync", "copy", source="db01", target="db02")
    engine.execute(engine.Run(ctx, c, 60, source=chosen), plan_step, db.STEPS)
    resync.assert_called_once_with(ctx, source=source, target=target, method="dump",
                                   force=chosen is not None, yes=True, chosen=chosen is not None)


def test_salvage_pending_until_applied(ctx):
    j = journal.Journal(ctx)
    j.write("salvage", "db", "salvage", {"host": "db02"}, backend="db02", source="db01",
            local="/s/db-db02-1.sql", remote=None, proof={})
    assert [p["local"] for p in journal.salvage_pending(ctx, "db")] == ["/s/db-db02-1.sql"]
    j.write("done", "db", "sync.salvage", {"file": "/s/other.sql"})
    assert len(journal.salvage_pending(ctx, "db")) == 1
    j.write("done", "db", "sync.salvage", {"file": "/s/db-db02-1.sql"})
    assert journal.salvage_pending(ctx, "db") == []


def test_salvage_apply_runs_each_section_through_pgpool_then_verifies(ctx, fake, tmp_path):
    from test_pgpool import BOTH_UP, DB02_DOWN
    f = tmp_path / "s.sql"
    f.write_text('-- hatasks salvage: test\n\\connect "GYOM_DB"\nINSERT INTO public.t SELECT 1;\n')
    fake.sql("SHOW pool_nodes", BOTH_UP)
    dbsim.serve(fake, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))})
    fake.sql("INSERT INTO public.t", [])
    out = salvage.apply(ctx, "db", str(f))
    assert out == {"databases": ["GYOM_DB"], "equal": True}
    [ins] = [q for q in fake.queries if "INSERT INTO public.t" in str(q.query)]
    assert (ins.port, ins.target, ins.dbname) == (9999, "10.231.0.100", "GYOM_DB")
    # a backend down: the rows would reach only one side
    fake.sql_rules.insert(0, ("SHOW pool_nodes", None, DB02_DOWN))
    with pytest.raises(StateError):
        salvage.apply(ctx, "db", str(f))
    with pytest.raises(HaError):
        salvage.apply(ctx, "db", str(tmp_path / "missing.sql"))


PG_DUMP_U = """--
-- PostgreSQL database dump
--

\\restrict abc123
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

CREATE TABLE public.u (
    id integer NOT NULL,
    v text
);

CREATE SEQUENCE public.u_id_seq
    AS integer;
ALTER TABLE ONLY public.u
    ADD CONSTRAINT u_pkey PRIMARY KEY (id);

\\unrestrict abc123
"""


def test_a_table_only_the_target_has_is_created_first_in_its_salvage_section(ctx, fake):
    """After the rebuild from the source the table exists nowhere: the salvage file creates it
    (as the target defines it, pg_dump --schema-only there) before inserting its rows."""
    fake.on(lambda host, cmd: True, (0, ""))
    fake.on("pg_dump --schema-only", (0, PG_DUMP_U))   # the latest rule answers first
    contents = {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))}
    contents["db02"]["GYOM_DB"]["public.u"] = dbsim.table((7, "own"))
    dbsim.serve(fake, contents)
    with pytest.raises(StateError) as exc:
        salvage.prove_clean(ctx, "db", "db02", "db01", force=False, what="the test")
    assert "GYOM_DB public.u by id (a table only db02 has): 1 row(s) only on db02" \
        in exc.value.message
    [rec] = [r for r in journal.history(ctx) if r["event"] == "salvage"]
    assert rec["proof"]["tables"][0]["new_table"] is True
    [(db, body)] = salvage.sections(open(rec["local"]).read())
    lines = [ln for ln in body.splitlines() if ln and not ln.startswith("--")]
    assert lines[0] == "CREATE TABLE public.u ("
    assert lines.index("    ADD CONSTRAINT u_pkey PRIMARY KEY (id);") < \
        [i for i, ln in enumerate(lines) if ln.startswith("INSERT INTO public.u")][0]
    assert not [ln for ln in lines if ln.startswith(("\\", "SET ", "SELECT pg_catalog"))]
    [dump] = [c for c in fake.calls if "pg_dump" in c.command]
    assert dump.host == "db02" and dump.user == "postgres"
    assert dump.command.endswith("-p 5432 -t '\"public\".\"u\"' GYOM_DB")


def test_a_table_on_both_sides_is_not_created_again(ctx, fake):
    fake.on(lambda host, cmd: True, (0, ""))
    contents = {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"), (2, "b"))}
    dbsim.serve(fake, contents)
    with pytest.raises(StateError):
        salvage.prove_clean(ctx, "db", "db02", "db01", force=False, what="the test")
    assert not [c for c in fake.calls if "pg_dump" in c.command]


def test_resync_finding_both_attached_and_equal_settles_the_pending_diagnosis(ctx, fake,
                                                                              monkeypatch):
    """chaos seed 11 step 3: a power failure of db01 was diagnosed (a resync pending); once
    both were back, attached and equal, sync.resync found nothing to do, and db.recover planned
    the same resync again and gave up (exit 6). The equality sync.resync proved is journaled
    (an `equal` record) and settles the pending diagnosis."""
    from hatasks import rules
    fake.on(lambda host, cmd: True, (0, ""))
    both_up = {"degenerated": False, "backends": [{"host": "db01", "status": "up"},
                                                  {"host": "db02", "status": "up"}]}
    monkeypatch.setattr(sync, "read_pool", lambda ctx, c: both_up)
    monkeypatch.setattr(sync, "restart_stopped_pgpool", lambda *a: None)
    monkeypatch.setattr(sync.pg, "connectable", lambda *a, **k: True)
    j = journal.Journal(ctx)
    j.write("diagnosis", "db", "db.diagnose", {}, pattern="power", host="db01", source="db02")
    assert rules.journal_facts(j.records(), "db")["pending"]["host"] == "db01"
    contents = {"db01": dbsim.same((1, "a"), (2, "b")), "db02": dbsim.same((1, "a"), (2, "b"))}
    dbsim.serve(fake, contents)
    assert "nothing_to_do" in sync.resync(ctx, source="db02", target="db01", yes=True)
    [eq] = [r for r in j.records() if r["event"] == "equal"]
    assert eq["backends"] == ["db02", "db01"] and "sync.resync" in eq["proof"]
    assert rules.journal_facts(j.records(), "db")["pending"] is None
    # backends that differ: no equality proven, the diagnosis stays pending
    j.write("diagnosis", "db", "db.diagnose", {}, pattern="power", host="db01", source="db02")
    contents["db02"] = dbsim.same((1, "a"), (2, "b"), (3, "c"))
    with pytest.raises(StateError, match="crm_mon"):  # it goes on to plan (reads the cluster)
        sync.prepare(ctx, source="db02", target="db01")
    assert len([r for r in j.records() if r["event"] == "equal"]) == 1
    assert rules.journal_facts(j.records(), "db")["pending"]["host"] == "db01"


def test_resync_nothing_to_do_under_dry_writes_nothing(dry_ctx, fake, monkeypatch):
    fake.on(lambda host, cmd: True, (0, ""))
    monkeypatch.setattr(sync, "read_pool", lambda ctx, c: {"degenerated": False, "backends": []})
    monkeypatch.setattr(sync.pg, "connectable", lambda *a, **k: True)
    dbsim.serve(fake, {"db01": dbsim.same((1, "a")), "db02": dbsim.same((1, "a"))})
    p, reason = sync.prepare(dry_ctx, source="db02", target="db01")
    assert p is None and reason.startswith("nothing to do")
    assert journal.Journal(dry_ctx).records() == []
