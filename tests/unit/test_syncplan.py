"""syncplan (pure): source selection, plan, checkpoint/resume state machine, exact commands
(quoting), disk fit, digest comparison. The shell snippets that hatasks runs on the hosts (awk
filter of the dump, config copy) are run here for real with bash on temporary files."""

import ast
import pathlib
import shlex
import subprocess

import pytest
from psycopg2 import sql

from hatasks import compare, syncplan
from hatasks.errors import HaError, UsageError

HOSTS = ["db01", "db02"]


def pool_now(db01="up", db02="up"):
    backends = [{"node_id": 0, "host": "db01", "status": db01}, {"node_id": 1, "host": "db02", "status": db02}]
    up = [b["host"] for b in backends if b["status"] == "up"]
    return {"backends": backends, "degenerated": len(up) < 2, "newest": up[0] if len(up) == 1 else None,
            "main": up[0] if up else None}


def record(host, in_sync=False):
    return {"newest": host, "ts": "2026-11-25T17:00:00Z", "evidence": {"in_sync": in_sync}}


# --------------------------------------------------------------------------- source selection


def test_source_from_record_agreeing_with_pgpool():
    c = syncplan.choose_source(HOSTS, pool_now(db02="down"), record("db01"))
    assert (c["source"], c["target"], c["tentative"]) == ("db01", "db02", False)
    assert any("journal: newest data on db01" in e for e in c["evidence"])
    assert any("pgpool now: db01 up, db02 down" in e for e in c["evidence"])


def test_source_from_pgpool_when_nothing_recorded():
    c = syncplan.choose_source(HOSTS, pool_now(db01="down"), None)
    assert (c["source"], c["target"]) == ("db02", "db01")


def test_record_contradicted_by_pgpool_is_refused_with_evidence():
    with pytest.raises(HaError) as e:
        syncplan.choose_source(HOSTS, pool_now(db02="down"), record("db02"))
    assert e.value.code == HaError.REFUSED
    assert "contradicted" in e.value.message and "journal says db02" in e.value.message
    assert "pgpool now: db01 up, db02 down" in e.value.message


def test_pgpool_down_uses_the_record():
    c = syncplan.choose_source(HOSTS, None, record("db02"))
    assert c["source"] == "db02" and "cannot cross-check" in " ".join(c["evidence"])


def test_unknown_when_pgpool_down_and_no_record():
    with pytest.raises(HaError) as e:
        syncplan.choose_source(HOSTS, None, None)
    assert e.value.code == HaError.REFUSED and "unknown" in e.value.message


def test_no_backend_up_is_refused():
    with pytest.raises(HaError) as e:
        syncplan.choose_source(HOSTS, pool_now("down", "down"), record("db01"))
    assert "no backend up" in e.value.message


def test_all_up_without_record_is_tentative():
    c = syncplan.choose_source(HOSTS, pool_now(), None)
    assert c["tentative"] is True and c["source"] == "db01"


def test_all_up_with_degeneration_record_is_not_tentative():
    c = syncplan.choose_source(HOSTS, pool_now(), record("db02"))
    assert c["tentative"] is False and c["source"] == "db02"


def test_named_source_that_pgpool_left_is_refused_unless_forced():
    with pytest.raises(HaError) as e:
        syncplan.choose_source(HOSTS, pool_now(db01="down"), None, source="db01")
    assert "--source db01 contradicts pgpool" in e.value.message
    assert syncplan.choose_source(HOSTS, pool_now(db01="down"), None, source="db01", force=True)["target"] == "db02"


def test_named_source_against_the_record_is_refused():
    with pytest.raises(HaError) as e:
        syncplan.choose_source(HOSTS, None, record("db02"), source="db01")
    assert "contradicts the journal" in e.value.message


def test_same_source_and_target_and_unknown_names():
    with pytest.raises(UsageError):
        syncplan.choose_source(HOSTS, pool_now(db02="down"), None, source="db01", target="db01")
    with pytest.raises(UsageError) as e:
        syncplan.choose_source(HOSTS, pool_now(db02="down"), None, target="db01")
    assert "both db01" in e.value.message
    with pytest.raises(UsageError) as e:
        syncplan.choose_source(HOSTS, None, None, source="lb01")
    assert "DB hosts: db01, db02" in e.value.message


def test_choose_source_refuses_a_contradicted_record():
    """journal.newest() lists later contrary views (split brain): no source is picked alone,
    and a named one needs --force."""
    pool = {"backends": [{"host": "db01", "status": "up"}, {"host": "db02", "status": "down"}],
            "degenerated": True, "newest": "db01"}
    recorded = {"newest": "db02", "ts": "t1", "evidence": {"in_sync": False},
                "contradicted_by": [{"newest": "db01", "ts": "t2"}]}
    with pytest.raises(HaError) as exc:
        syncplan.choose_source(["db01", "db02"], pool, recorded)
    assert exc.value.code == HaError.REFUSED and "contradicted" in exc.value.message
    with pytest.raises(HaError):
        syncplan.choose_source(["db01", "db02"], pool, recorded, source="db02")
    got = syncplan.choose_source(["db01", "db02"], pool, recorded, source="db02", force=True)
    assert (got["source"], got["target"]) == ("db02", "db01")


# --------------------------------------------------------------------------- plan


def params(method="dump", vacuum=False):
    return {"cluster": "db", "method": method, "source": "db02", "target": "db01", "maint_port": 1234,
            "vacuum": vacuum, "workdir": "/var/lib/postgresql/hatasks-resync",
            "pgdata": "/var/lib/postgresql/15/data", "stamp": "20261125-171500",
            "kept": "/var/lib/postgresql/15/data.2026-11-25-171500", "pgpool_host": "db01"}


def test_dump_plan_names_every_step_and_host():
    plan = syncplan.make_plan(params())
    steps = [i["step"] for i in plan]
    assert steps == ["record_newest", "stop_pgpool", "source_maint", "dump_source", "stop_target",
                     "keep_datadir", "initdb_target", "copy_config", "start_target_maint", "import",
                     "verify", "restart_normal", "start_pgpool", "attach", "verify_pool"]
    by = {i["step"]: i for i in plan}
    assert by["stop_pgpool"]["host"] == "db01"
    assert by["source_maint"]["host"] == "db02" and "-p 1234" in by["source_maint"]["what"]
    assert by["keep_datadir"]["what"].startswith(
        "mv /var/lib/postgresql/15/data /var/lib/postgresql/15/data.2026-11-25-171500")
    assert by["import"]["host"] == "db01" and "ON_ERROR_STOP=1" in by["import"]["what"]
    assert [i["n"] for i in plan] == list(range(1, len(plan) + 1))


def test_vacuum_adds_both_vacuum_steps():
    steps = [i["step"] for i in syncplan.make_plan(params(vacuum=True))]
    assert steps.index("vacuum_source") == steps.index("dump_source") - 1
    assert steps.index("vacuum_target") == steps.index("import") + 1


def test_basebackup_and_online_plans():
    bb = [i["step"] for i in syncplan.make_plan(params("basebackup"))]
    assert "basebackup" in bb and "import" not in bb and "initdb_target" not in bb
    assert bb.index("copy_config") == bb.index("basebackup") + 1
    on = [i["step"] for i in syncplan.make_plan(params("online"))]
    assert on == ["record_newest", "install_recovery", "recover_online", "verify", "verify_pool"]


# --------------------------------------------------------------------------- journal state machine


def rec(op, event, action="sync.resync", args=None, **kw):
    return dict({"cluster": "db", "op": op, "event": event, "action": action, "args": args or {}}, **kw)


def cp(op, step, **data):
    return rec(op, "checkpoint", step=step, data=data)


def test_resume_state_follows_the_chain_and_merges_data():
    records = [
        rec("a", "start"), cp("a", "plan", params=params()), cp("a", "record_newest"),
        cp("a", "stop_pgpool", pgpool_stopped=True), rec("a", "failed", message="interrupted"),
        rec("b", "start", args={"resume_of": "a"}), cp("b", "source_maint"),
        cp("b", "dump_source", dump="/w/x.sql"), rec("b", "failed", message="db01: lost"),
        rec("other", "start", action="pg.stop", cluster="db"),
    ]
    s = syncplan.resume_state(records, "db")
    assert s["op"] == "b" and s["chain"] == ["a", "b"]
    assert s["done"] == ["plan", "record_newest", "stop_pgpool", "source_maint", "dump_source"]
    assert s["data"]["dump"] == "/w/x.sql" and s["data"]["pgpool_stopped"] is True
    assert s["params"]["source"] == "db02"
    assert (s["finished"], s["outcome"], s["message"], s["rolled_back"]) == (False, "failed", "db01: lost", False)


def test_resume_state_of_a_resync_nested_in_a_scenario():
    records = [rec("d", "start", action="db.recover"),
               rec("a", "start", parent="d"), cp("a", "plan", params=params()),
               dict(cp("a", "stop_pgpool"), parent="d"), rec("d", "failed", action="db.recover")]
    s = syncplan.resume_state(records, "db")
    assert s["op"] == "a" and s["done"] == ["plan", "stop_pgpool"] and not s["finished"]


def test_resume_state_of_an_interrupted_run_without_end_record():
    s = syncplan.resume_state([rec("a", "start"), cp("a", "plan", params=params()), cp("a", "record_newest")], "db")
    assert s["outcome"] is None and not s["finished"] and s["done"] == ["plan", "record_newest"]


def test_resume_state_redo_and_rollback_and_other_cluster():
    records = [
        rec("a", "start"), cp("a", "plan", params=params()), cp("a", "keep_datadir", kept="/k"),
        cp("a", "initdb_target"), cp("a", "copy_config"), rec("a", "failed", message="x"),
        rec("b", "start", args={"resume_of": "a"}), cp("b", "redo", steps=["initdb_target", "copy_config"]),
        cp("b", "initdb_target"), rec("b", "failed", message="y"),
        rec("r", "start", action="sync.rollback", args={"of": "b"}), rec("r", "done", action="sync.rollback"),
        rec("z", "start", cluster="lb"),
    ]
    s = syncplan.resume_state(records, "db")
    assert s["done"] == ["plan", "keep_datadir", "initdb_target"]
    assert s["rolled_back"] is True and s["data"]["kept"] == "/k"
    assert syncplan.resume_state(records, "nothere") is None


def test_steps_to_run_redoes_a_half_done_rebuild():
    done = ["record_newest", "stop_pgpool", "source_maint", "dump_source", "stop_target", "keep_datadir",
            "initdb_target", "copy_config"]
    todo, redo = syncplan.steps_to_run("dump", False, done)
    assert redo == ["initdb_target", "copy_config"]
    assert todo[:4] == ["initdb_target", "copy_config", "start_target_maint", "import"]
    todo, redo = syncplan.steps_to_run("dump", False, done + ["start_target_maint", "import"])
    assert redo == [] and todo[0] == "verify"
    todo, redo = syncplan.steps_to_run("basebackup", False, ["record_newest", "keep_datadir"])
    assert redo == [] and "basebackup" in todo and "record_newest" not in todo


def test_steps_to_run_copies_again_an_online_copy_not_verified():
    # an online resync whose verify failed (or was interrupted) copies again on resume
    done = ["record_newest", "install_recovery", "recover_online"]
    todo, redo = syncplan.steps_to_run("online", False, done)
    assert redo == ["recover_online"] and todo == ["recover_online", "verify", "verify_pool"]
    todo, redo = syncplan.steps_to_run("online", False, done + ["verify"])
    assert redo == [] and todo == ["verify_pool"]


# --------------------------------------------------------------------------- exact commands


def test_import_command_exact_and_quoted():
    cmd = syncplan.import_command("10.231.0.12", "/w/20261125-171500/db02_dumpall.x.sql",
                              "/usr/lib/postgresql/15/bin", 1234, "postgres", "/w/imp.log")
    assert cmd.startswith("bash -c ")
    inner = shlex.split(cmd)[2]
    assert inner.startswith("set -o pipefail; ssh -o BatchMode=yes -o StrictHostKeyChecking=yes "
                            "-o ConnectTimeout=10 postgres@10.231.0.12 'cat -- /w/20261125-171500/db02_dumpall.x.sql' | awk -v su=postgres ")
    assert inner.endswith("| /usr/lib/postgresql/15/bin/psql -X -q -v ON_ERROR_STOP=1 -p 1234 -d postgres -f - "
                          ">/w/imp.log 2>&1")


def test_import_filter_skips_only_the_bootstrap_superuser_in_the_globals(tmp_path):
    dump = ("SET default_transaction_read_only = off;\nDROP DATABASE IF EXISTS \"GYOM_DB\";\n"
            "DROP ROLE IF EXISTS postgres;\nDROP ROLE IF EXISTS app;\nCREATE ROLE postgres;\n"
            "ALTER ROLE postgres WITH SUPERUSER;\nCREATE ROLE app;\n\\connect template1\n"
            "COPY t (x) FROM stdin;\nCREATE ROLE postgres;\n\\.\n")
    cmd = syncplan.import_command("h", "/nonexistent", "/bin", 1, "postgres", "/dev/null")
    awk_part = shlex.split(shlex.split(cmd)[2].split(" | ")[1])
    out = subprocess.run(awk_part, input=dump, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert "-- hatasks: skipped (bootstrap superuser exists): DROP ROLE IF EXISTS postgres;" in lines
    assert "-- hatasks: skipped (bootstrap superuser exists): CREATE ROLE postgres;" in lines
    assert "DROP ROLE IF EXISTS app;" in lines and "CREATE ROLE app;" in lines
    assert "ALTER ROLE postgres WITH SUPERUSER;" in lines
    # after the first \connect (table data), the same text is data and stays
    assert lines[-2] == "CREATE ROLE postgres;"


def test_bootstrap_role_literal_quotes_when_needed():
    assert syncplan.bootstrap_role_literal("postgres") == "postgres"
    assert syncplan.bootstrap_role_literal("Admin") == '"Admin"'
    assert syncplan.bootstrap_role_literal('we"ird') == '"we""ird"'


def test_dump_and_initdb_and_basebackup_commands():
    assert syncplan.dump_command("/b", 1234, ["-c", "-v", "--if-exists"], "/w/s", ".x.partial", ".l.partial") == (
        "umask 077 && cd /w/s && /b/pg_dumpall -p 1234 -c -v --if-exists -f .x.partial 2> .l.partial")
    s = {"superuser": "postgres", "encoding": "UTF8", "collate": "C.UTF-8", "ctype": "C.UTF-8",
         "provider": "c", "checksums": True, "wal_segsize_mb": 16}
    assert syncplan.initdb_command("/b", "/d/data", s) == (
        "/b/initdb -D /d/data -U postgres -E UTF8 --lc-collate=C.UTF-8 --lc-ctype=C.UTF-8 "
        "--data-checksums --wal-segsize=16")
    s.update(provider="i", icu_locale="ja-JP", checksums=False, collate="ja_JP.UTF-8")
    assert syncplan.initdb_command("/b", "/d/data", s) == (
        "/b/initdb -D /d/data -U postgres -E UTF8 --lc-collate=ja_JP.UTF-8 --lc-ctype=C.UTF-8 "
        "--locale-provider=icu --icu-locale=ja-JP --wal-segsize=16")
    assert syncplan.basebackup_command("/b", "10.0.0.2", 1234, "postgres", "/d/data") == (
        "/b/pg_basebackup -h 10.0.0.2 -p 1234 -U postgres -D /d/data -X stream -c fast && "
        "rm -f /d/data/standby.signal /d/data/recovery.signal")


def test_copy_config_copies_site_files_not_the_servers_own(tmp_path):
    old, new = tmp_path / "data.old", tmp_path / "data"
    old.mkdir()
    new.mkdir()
    for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf", "postgresql.auto.conf",
                 "recovery_1st_stage", "PG_VERSION", "postmaster.pid", "postmaster.opts",
                 "standby.signal", "backup_label", ".hatasks-resync", ".site-hidden"):
        (old / name).write_text(name)
    (old / "base").mkdir()
    (new / "PG_VERSION").write_text("15")
    out = subprocess.run(["bash", "-c", syncplan.copy_config_command(str(old), str(new))],
                         capture_output=True, text=True, check=True).stdout.split()
    assert sorted(out) == [".site-hidden", "pg_hba.conf", "pg_ident.conf", "postgresql.auto.conf",
                           "postgresql.conf", "recovery_1st_stage"]
    assert (new / "PG_VERSION").read_text() == "15"
    assert not (new / "postmaster.pid").exists() and not (new / "standby.signal").exists()


def test_digest_query_quotes_identifiers():
    """Schema and table go in as psycopg2 Identifiers (quoted by the driver, never pasted into the
    text), schema first; the checksum hashes whole rows, so it does not depend on row order."""
    query = syncplan.digest_query("public", 'we"ird')
    idents = [part.strings for part in query.seq if isinstance(part, sql.Identifier)]
    assert idents == [("public",), ('we"ird',)]
    text = "".join(part.string for part in query.seq if isinstance(part, sql.SQL))
    assert 'we"ird' not in text and "public" not in text
    assert "hashtextextended(hatasks_row::text, 0)" in text and "count(*)" in text


# --------------------------------------------------------------------------- disk, digests


def test_disk_needs_and_fit_sum_per_filesystem():
    needs = syncplan.disk_needs("dump", 1_000_000_000, 2_000_000_000, 500_000_000)
    assert needs == {("source", "workdir"): 1_100_000_000, ("target", "workdir"): 550_000_000,
                     ("target", "pgdata"): 1_100_000_000}
    where = {("source", "workdir"): ("db02", "/", 5_000_000_000),
             ("target", "workdir"): ("db01", "/var", 1_500_000_000),
             ("target", "pgdata"): ("db01", "/var", 1_500_000_000)}
    problems = syncplan.check_fit(needs, where)
    assert problems == ["db01:/var needs 1.65 GB (workdir 0.55 GB + pgdata 1.10 GB) but has 1.50 GB free"]
    assert syncplan.disk_needs("basebackup", 1, 2_000_000_000, 3) == {("target", "pgdata"): 2_200_000_000}


def test_diff_digests():
    a = {"GYOM_DB": {"public.t": [3, "10"], "public.u": [1, "5"]}, "postgres": {}}
    b = {"GYOM_DB": {"public.t": [3, "11"], "public.u": [1, "5"]}, "postgres": {}}
    rows, diffs = compare.diff_digests({"db01": a, "db02": b})
    assert [r["table"] for r in diffs] == ["public.t"]
    assert diffs[0]["counts"] == {"db01": 3, "db02": 3} and diffs[0]["checksums"]["db02"] == "11"
    rows, diffs = compare.diff_digests({"db01": a, "db02": {"postgres": {}}})
    assert diffs[0]["note"] == "database missing on db02"
    assert compare.diff_digests({"db01": a, "db02": a})[1] == []


# --------------------------------------------------------------------------- printed plan, start command, layer


def test_plan_lines_one_per_evidence_and_step_done_ones_marked():
    p = dict(params(), evidence=["journal: newest data on db02", "pgpool now: db01 down, db02 up"])
    plan = syncplan.make_plan(p)
    done = {"record_newest", "stop_pgpool"}
    lines = syncplan.plan_lines(p, plan, done)
    assert len(lines) == 1 + len(p["evidence"]) + len(plan)
    header, evidence, steps = lines[0], lines[1:3], lines[3:]
    for fact in ("dump", "db02", "db01", "cluster db", "1234", p["workdir"]):
        assert fact in header
    assert [e.strip().split(": ", 1)[1] for e in evidence] == p["evidence"]
    for line, item in zip(steps, plan):
        n, rest = line.strip().split(". ", 1)
        assert int(n) == item["n"]
        assert rest.startswith("done ") == (item["step"] in done)
        assert f"[{item['host']}] {item['what']}" in rest


def test_bulk_start_command_arguments():
    cmd = syncplan.bulk_start_command("/usr/lib/postgresql/15/bin", "/d/my data", 1234, "/l/pg ctl.log", 45)
    argv = shlex.split(cmd)
    assert argv[0] == "/usr/lib/postgresql/15/bin/pg_ctl"
    assert argv[argv.index("-D") + 1] == "/d/my data"
    assert argv[argv.index("-l") + 1] == "/l/pg ctl.log"
    assert argv[argv.index("-t") + 1] == "45" and "-w" in argv and argv[-1] == "start"
    server_opts = shlex.split(argv[argv.index("-o") + 1])
    assert server_opts[:2] == ["-p", "1234"]
    assert server_opts[2:] == shlex.split(syncplan.BULK_LOAD)
    assert "autovacuum=off" in server_opts and "synchronous_commit=off" in server_opts


def test_check_method_and_run_dir():
    assert [syncplan.check_method(m) for m in syncplan.METHODS] == list(syncplan.METHODS)
    with pytest.raises(UsageError) as e:
        syncplan.check_method("rsync")
    assert "'rsync'" in e.value.message
    assert syncplan.run_dir(params()) == "/var/lib/postgresql/hatasks-resync/20261125-171500"


def test_first_diff_counts_the_differences_and_names_the_first():
    a = {"GYOM_DB": {"public.t": [3, "10"], "public.u": [1, "5"]}}
    b = {"GYOM_DB": {"public.t": [4, "11"], "public.u": [2, "6"]}}
    rows, diffs = compare.diff_digests({"db01": a, "db02": b})
    line = syncplan.first_diff({"differences": diffs})
    assert line.startswith("2 ") and "GYOM_DB.public.t" in line and "public.u" not in line
    assert "db01=3 rows/10" in line and "db02=4 rows/11" in line


def test_summary_reports_the_checkpointed_facts():
    st = {"kept": "/k", "dump": "/w/d.sql", "safety_dump": None, "verified_tables": 7, "other": 1}
    assert syncplan.summary(params(), st, 12.345) == {
        "method": "dump", "source": "db02", "target": "db01", "kept_datadir": "/k", "dump": "/w/d.sql",
        "safety_dump": None, "verified_tables": 7, "seconds": 12.3}


def test_syncplan_imports_only_the_leaf_modules_errors_and_shell():
    tree = ast.parse(pathlib.Path(syncplan.__file__).read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in mods if m and m.startswith("hatasks")} == {"hatasks.errors", "hatasks.shell"}


def test_safety_dump_only_for_a_target_not_proven_clean():
    """A target proven to hold nothing the source lacks gets no safety dump (its data is on the
    source and its data dir is kept); any other proof (not clean, forced, none) keeps it."""
    what = {i["step"]: i["what"] for i in syncplan.make_plan(dict(params(), proof={"clean": True}))}
    assert "no safety dump of db01" in what["dump_source"]
    for proof in ({"clean": False}, {"clean": None}, None):
        what = {i["step"]: i["what"] for i in syncplan.make_plan(dict(params(), proof=proof))}
        assert "meanwhile safety pg_dumpall of db01's current data" in what["dump_source"], proof
    assert ("target", "workdir") not in syncplan.disk_needs("dump", 10, 20, 30, safety=False)
    assert syncplan.disk_needs("dump", 10, 20, 30)[("target", "workdir")] == 33


def test_a_basebackup_needs_the_data_files_and_its_own_wal_not_the_sources_pg_wal():
    """The source's pg_wal (up to max_wal_size, often the largest part of a quiet data dir) is
    not copied: pg_basebackup -X stream takes the WAL of the copy alone."""
    gb = 1_000_000_000
    needs = syncplan.disk_needs("basebackup", 1, 5 * gb, 3, src_copy_bytes=1 * gb)
    assert needs == {("target", "pgdata"): int((gb + syncplan.COPY_WAL_BYTES) * 1.1)}
    # never more than the whole data dir; online counts it whole (clients write meanwhile)
    assert syncplan.disk_needs("basebackup", 1, gb, 3, src_copy_bytes=gb)[("target", "pgdata")] == int(gb * 1.1)
    assert syncplan.disk_needs("online", 1, 5 * gb, 3, src_copy_bytes=gb)[("target", "pgdata")] == int(5 * gb * 1.1)
