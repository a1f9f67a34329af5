"""The steps of a data resync and the host I/O they share.

Each step takes (ctx, p, st), p = the plan params, st = data of earlier checkpoints, and returns a
dict of data to checkpoint. Steps check their own preconditions, so a resume can re-enter any of
them. STEPS maps each step name of the plan to its function.
"""

import base64
import concurrent.futures
import datetime
import pathlib
import re
import time

from hatasks import backends, compare, newest, output, pg, pgpool, remote, salvage
from hatasks.syncio import ensure_running, normal_port, pool_host, probe, run, say
from hatasks.syncrescue import (leave_source_detached, serve_source_alone, start_if_down,
                                stop_standby_copy)
from hatasks.divergence import compare_digests, position
from hatasks.shell import q
from hatasks.errors import HaError, StateError
from hatasks.states import NOT_ACCEPTING
from hatasks.syncplan import (BASEBACKUP_STREAMED, BULK_LOAD, MARKER, RECOVERY_LOG, RECOVERY_MARK, RECOVERY_SCRIPTS,
                              SLOT, basebackup_command, bulk_start_command, copy_config_command,
                              dump_command, first_diff, guarded,
                              import_command, initdb_command, manifest_end_lsn_command,
                              read_position_command, run_dir, verifybackup_command)

RECOVERY_DIR = pathlib.Path(__file__).resolve().parent / "recovery"


def remote_int(ctx, h, cmd, user="postgres"):
    """The integer a read-only command prints on H, or None."""
    out = probe(ctx, h, cmd, user=user).stdout.strip()
    return int(out) if out.isdigit() else None


def du_command(path, exclude=None):
    skip = f" --exclude={q(exclude)}" if exclude else ""
    return f"du -sB1{skip} {q(path)} 2>/dev/null | cut -f1"


def sizes(p):
    """The source's sizes the preflight measured ({"db", "data"} bytes; empty for an older plan)."""
    return p.get("sizes") or {}


def figures_text(f):
    """'612.3 MB, 86.2 MB/s' of a Progress's final figures."""
    return f"{output.human_bytes(f['bytes'])}, {output.human_bytes(f['rate'])}/s"


# =========================================================================== I/O helpers


def bindir(h):
    """PostgreSQL's program directory on H."""
    return h.vars["pg_bindir"].rstrip("/")


def local_ok(ctx, h, port):
    """SELECT 1 through the server's own Unix socket as postgres (peer): works on a fresh
    cluster whose superuser has no password yet."""
    cmd = f"{q(bindir(h) + '/psql')} -X -At -p {int(port)} -d postgres -c 'SELECT 1'"
    res = probe(ctx, h, cmd)
    return res.exited == 0 and res.stdout.strip() == "1"


def start_local(ctx, h, port, timeout=60):
    """pg_ctl start on PORT with the bulk-load settings, verified through the Unix socket (for the
    freshly built target: its superuser has no password before the import)."""
    st = pg.server_state(ctx, h)
    if st["running"] and st["port"] == port and local_ok(ctx, h, port):
        return
    if st["running"]:
        pg.stop(ctx, h, "fast")
    say(f"{h.name}: starting PostgreSQL on port {port} (bulk-load settings: {BULK_LOAD})")
    cmd = bulk_start_command(bindir(h), h.vars["pgdata"], port, pg.ctl_log(h), timeout)
    res = run(ctx, h, cmd, warn=True, timeout=timeout + 30)
    deadline = time.monotonic() + timeout
    while not local_ok(ctx, h, port):
        if res.exited != 0 or time.monotonic() > deadline:
            errors = pg.recent_log_errors(ctx, h, port)
            raise StateError(f"{h.name}: PostgreSQL did not start on port {port}: "
                             f"{errors[-1] if errors else (res.stderr or res.stdout).strip()[-200:]}")
        time.sleep(0.5)
    say(f"{h.name}: PostgreSQL accepts local connections on port {port}")


def read_pool(ctx, c):
    """SHOW pool_nodes of cluster C, or None when pgpool does not answer."""
    try:
        return backends.read_pool_nodes(ctx, c.name)
    except HaError:
        return None


# =========================================================================== the steps


def record_newest(ctx, p, st):
    """Journal which backend holds the newest data while pgpool still answers (not again when
    sync.prepare wrote it in this run: st newest_fresh; pgpool.stop records it at the stop)."""
    if st.get("newest_fresh"):
        say(f"newest data: {st['newest_fresh']} (recorded with the plan)")
        return {"newest_recorded": st["newest_fresh"]}
    rec = newest.record_newest(ctx, p["cluster"], f"sync.resync {p['source']} -> {p['target']}")
    return {"newest_recorded": rec.get("newest") or (rec.get("previous") or {}).get("newest")}


def stop_pgpool(ctx, p, st):
    """Stop only the pgpool resource (the stack and the VIP stay); remember where it ran.
    When pgpool wrote to the target alone (a source chosen against pgpool), the target is
    proved again once pgpool is stopped (reprove_target)."""
    out = _stop_pgpool(ctx, p, st)
    if p.get("reprove") and not remote.is_dry(ctx):
        out.update(reprove_target(ctx, p))
    return out


def reprove_target(ctx, p):
    """The proof before the plan (sync.prepare) covers the writes until then; while pgpool
    sent writes to the target alone, every write after it reached only the target (chaos seed
    41 step 34: 14 acknowledged writes between the proof and the stop, gone from the cluster
    with the rebuilt target). Proved again with pgpool stopped: what the target holds that the
    source lacks goes to a salvage file (the source was chosen) before anything is moved."""
    say(f"pgpool wrote to {p['target']} alone until it stopped: proving again that "
        f"{p['target']} holds no write {p['source']} lacks")
    proof = salvage.prove_clean(ctx, p["cluster"], p["target"], p["source"], p.get("force"),
                                chosen=p.get("chosen"),
                                what=f"to rebuild {p['target']} from {p['source']}")
    return {"reproof": {k: proof.get(k) for k in ("clean", "how", "seconds")}}


def _stop_pgpool(ctx, p, st):
    c = backends.pgpool_cluster(ctx, p["cluster"])
    host = p.get("pgpool_host") or pool_host(ctx, c)
    if host:
        res = pgpool.stop(ctx, host, "fast", reason="sync.resync")
        if res.get("stopped") or st.get("pgpool_stopped"):
            return {"pgpool_stopped": True, "pgpool_host": host}
    rs = pgpool.resource_state(ctx, c)
    if rs and rs.get("node") and (rs.get("maintenance") or not rs.get("managed")):
        # stopped the way pgpool.stop does it (resource in maintenance): by this resync's
        # interrupted attempt (its checkpoint never written) or an operator; the resync
        # must hand it back to Pacemaker at its end, or nothing starts it again
        say(f"pgpool is stopped and its resource left in maintenance on {rs['node']}: "
            f"it is started again at the end of the resync")
        return {"pgpool_stopped": True, "pgpool_host": host or rs["node"]}
    if not host:
        say("pgpool is not running: nothing to stop")
        return {"pgpool_stopped": False}
    return {"pgpool_stopped": False, "pgpool_host": host}


def restart_source_maint(ctx, p, st):
    """The source on the maintenance port, so no application writes during the copy."""
    ensure_running(ctx, pg.db_host(ctx, p["source"]), p["maint_port"])
    return {}


def vacuum_source(ctx, p, st):
    s = pg.db_host(ctx, p["source"])
    ensure_running(ctx, s, p["maint_port"])
    run(ctx, s, f"mkdir -p -m 700 {q(run_dir(p))}")
    pg.vacuum(ctx, s, p["maint_port"], run_dir(p))
    return {}


def dump_source(ctx, p):
    """pg_dumpall of the source on the maintenance port into the work dir, checked complete."""
    s = pg.db_host(ctx, p["source"])
    ensure_running(ctx, s, p["maint_port"])
    dest = run_dir(p)
    run(ctx, s, f"mkdir -p -m 700 {q(dest)}")
    version = pg.server_version_num(ctx, s, p["maint_port"])
    flags = pg.dumpall_flags(version) + ["--if-exists"]
    stamp = datetime.datetime.now().strftime(pg.STAMP_FORMAT)
    names = pg.dump_names(s.name, stamp)
    t0 = time.monotonic()
    prog = output.Progress(f"{s.name}: pg_dumpall", sizes(p).get("db"), approx=True)
    tmp = f"{dest}/{names['tmp_sql']}"
    with output.watching(prog, lambda: remote_int(ctx, s, f"stat -c %s {q(tmp)} 2>/dev/null")):
        res = run(ctx, s, guarded(dump_command(bindir(s), p["maint_port"], flags, dest,
                                               names["tmp_sql"], names["tmp_log"])), warn=True)
    d = q(dest)
    log = run(ctx, s, f"cat {d}/{q(names['tmp_log'])}", warn=True)
    tail = run(ctx, s, f"tail -c 300 {d}/{q(names['tmp_sql'])}", warn=True)
    errors = pg.log_errors(log.stdout, "dumpall")
    complete = "database cluster dump complete" in tail.stdout
    if res.exited != 0 or errors or not complete:
        run(ctx, s, f"mv -f -- {d}/{q(names['tmp_log'])} {d}/{q(names['failed_log'])}", warn=True)
        why = errors[-1] if errors else (f"pg_dumpall exited {res.exited}" if res.exited else
                                         "the dump does not end with 'database cluster dump complete'")
        raise StateError(f"{s.name}: pg_dumpall of the source failed: {why} "
                         f"(log {dest}/{names['failed_log']}); the target was not touched")
    run(ctx, s, f"mv -- {d}/{q(names['tmp_log'])} {d}/{q(names['log'])} && "
                f"mv -- {d}/{q(names['tmp_sql'])} {d}/{q(names['sql'])}")
    size = run(ctx, s, f"stat -c %s {d}/{q(names['sql'])}").stdout.strip()
    figures = prog.finish(int(size) if size.isdigit() else None)
    say(f"{s.name}: dump {dest}/{names['sql']} ({size} bytes) complete and error-free "
        f"in {time.monotonic() - t0:.1f}s ({figures_text(figures)})")
    return {"dump": f"{dest}/{names['sql']}", "dump_log": f"{dest}/{names['log']}",
            "dump_bytes": int(size) if size.isdigit() else None, "dump_figures": figures}


def safety_dump(ctx, p):
    """Safety pg_dumpall of the target's current data (runbook C); skipped with a note when the
    target's PostgreSQL does not run (its data dir is kept anyway)."""
    t = pg.db_host(ctx, p["target"])
    st = pg.server_state(ctx, t)
    if not st["running"] or not pg.connectable(ctx, t, st["port"] or normal_port(t)):
        say(f"{t.name}: PostgreSQL not running: no safety dump (its data directory is kept instead)")
        return {"safety_dump": None}
    run(ctx, t, f"mkdir -p -m 700 {q(run_dir(p))}")
    res = pg.dumpall(ctx, t, st["port"], run_dir(p), quiet=True)
    say(f"{t.name}: safety dump {res['dump']} ({res['bytes']} bytes)")
    return {"safety_dump": res["dump"]}


def dump_source_and_target(ctx, p, st):
    """The source's dump and the target's safety dump side by side (two hosts, no shared disk).
    No safety dump when the proof before the plan showed the target holds no write the source
    lacks: its data is then on the source (being dumped) and its data dir is kept as it is."""
    if (p.get("proof") or {}).get("clean") is True:
        out = dump_source(ctx, p)
        say(f"{p['target']}: no safety dump: proven to hold no write {p['source']} lacks "
            f"({p['proof'].get('how')}); its data directory is kept as {p['kept']}")
        out["safety_dump"] = None
        return out
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        fs = ex.submit(dump_source, ctx, p)
        ft = ex.submit(safety_dump, ctx, p)
        out = fs.result()
        out.update(ft.result())
    return out


def stop_target(ctx, p, st):
    t = pg.db_host(ctx, p["target"])
    pg.stop(ctx, t, "fast")
    return {}


def keep_datadir(ctx, p, st):
    """Move the target's data dir aside under its kept name; never deleted here."""
    t = pg.db_host(ctx, p["target"])
    if pg.server_state(ctx, t)["running"]:
        pg.stop(ctx, t, "fast")
    kept = p["kept"]
    cmd = (f"if [ -e {q(kept)} ]; then echo 'already exists: {kept}' >&2; exit 1; fi; "
           f"if [ -e {q(p['pgdata'])} ]; then mv -T -- {q(p['pgdata'])} {q(kept)}; "
           f"else echo 'no data dir {p['pgdata']}' >&2; exit 1; fi")
    run(ctx, t, cmd, user="root")
    say(f"{t.name}: old data directory kept as {kept}")
    return {"kept": kept}


def _clear_new_datadir(ctx, t, p, why):
    """Before (re)building: stop PostgreSQL on the target, move a partial new data dir aside.
    Refuses when the kept copy is missing (it would be the only copy of the old data)."""
    pgdata, kept = p["pgdata"], p["kept"]
    if probe(ctx, t, f"test -d {q(kept)}", user="root").exited != 0:
        raise StateError(f"{t.name}: the kept data directory {kept} is missing: refusing to touch {pgdata}")
    st = pg.server_state(ctx, t)
    if st["running"]:
        pg.stop(ctx, t, "immediate")
    if probe(ctx, t, f"test -e {q(pgdata)}", user="root").exited == 0:
        ours = probe(ctx, t, f"test -f {q(pgdata + '/' + MARKER)}", user="root").exited == 0
        if ours:
            run(ctx, t, f"rm -rf -- {q(pgdata)}", user="root")
            say(f"{t.name}: removed the unfinished new data directory ({why})")
        else:
            aside = f"{pgdata}.partial-{datetime.datetime.now():%Y-%m-%d-%H%M%S}"
            run(ctx, t, f"mv -T -- {q(pgdata)} {q(aside)}", user="root")
            say(f"{t.name}: moved the unfinished new data directory aside as {aside} ({why})")


def initdb_target(ctx, p, st):
    """A fresh data dir with the source's encoding, locale and checksum setting, marked as ours."""
    t = pg.db_host(ctx, p["target"])
    _clear_new_datadir(ctx, t, p, "rebuilding")
    run(ctx, t, f"install -d -o postgres -g postgres -m 700 {q(p['pgdata'])}", user="root")
    run(ctx, t, initdb_command(bindir(t), p["pgdata"], p["settings"]) + " >/dev/null")
    run(ctx, t, f"echo {q(p['op'])} > {q(p['pgdata'] + '/' + MARKER)}")
    say(f"{t.name}: initdb done ({p['settings']['encoding']}, {p['settings']['collate']}, "
        f"checksums {'on' if p['settings'].get('checksums') else 'off'})")
    return {}


def basebackup_target(ctx, p, st):
    """A physical copy of the source as the new data dir, marked as ours."""
    t, s = pg.db_host(ctx, p["target"]), pg.db_host(ctx, p["source"])
    ensure_running(ctx, s, p["maint_port"])
    _clear_new_datadir(ctx, t, p, "rebuilding")
    prog = output.Progress(f"{t.name}: pg_basebackup", sizes(p).get("copy") or sizes(p).get("data"))
    # the live figure without pg_wal, as the total; the final one all that was written
    with output.watching(prog, lambda: remote_int(ctx, t, du_command(p["pgdata"], "pg_wal"), user="root")):
        run(ctx, t, guarded(basebackup_command(bindir(t), s.address, p["maint_port"],
                                               p["settings"]["superuser"], p["pgdata"])))
    figures = prog.finish()
    # one round trip: the copy's size; the marker (ours from here on: a resume removes it); the
    # copy as the source sent it (every file against its manifest, the WAL there); its end LSN
    t1 = time.monotonic()
    res = run(ctx, t, f"echo \"size=$({du_command(p['pgdata'])})\"; "
                      f"echo {q(p['op'])} > {q(p['pgdata'] + '/' + MARKER)} && "
                      f"{guarded(verifybackup_command(bindir(t), p['pgdata'], MARKER))}; rc=$?; "
                      f"[ $rc = 0 ] && echo \"end=$({manifest_end_lsn_command(p['pgdata'])})\"; "
                      f"exit $rc", warn=True)
    found = dict(ln.split("=", 1) for ln in (res.stdout or "").splitlines() if "=" in ln)
    size = found.get("size", "").strip()
    if size.isdigit():  # all that was written (the live figure left pg_wal out)
        figures.update(bytes=int(size), rate=round(int(size) / max(figures["seconds"], 1e-9), 1))
    say(f"{t.name}: pg_basebackup from {s.name} done in {figures['seconds']:.1f}s ({figures_text(figures)})")
    if res.exited != 0 and not remote.is_dry(ctx):
        raise StateError(f"{t.name}: pg_verifybackup rejects the copy: "
                         f"{(res.stderr or res.stdout).strip()[-300:]}; the old data directory is "
                         f"kept as {p['kept']}")
    end = found.get("end", "").strip()
    say(f"{t.name}: pg_verifybackup: every file matches {s.name}'s backup manifest, WAL to {end} "
        f"present ({time.monotonic() - t1:.1f}s)")
    return {"basebackup_figures": figures, "manifest_verified": True, "backup_end_lsn": end or None}


def copy_config(ctx, p, st):
    """The target's own configuration files back from its kept data dir."""
    t = pg.db_host(ctx, p["target"])
    res = run(ctx, t, copy_config_command(p["kept"], p["pgdata"]))
    files = res.stdout.split()
    say(f"{t.name}: copied back from {p['kept']}: {', '.join(files) or 'nothing'}")
    return {"config_files": files}


def start_target_maint(ctx, p, st):
    start_local(ctx, pg.db_host(ctx, p["target"]), p["maint_port"])
    return {}


def import_dump(ctx, p, st):
    """Stream the source's dump into the target; the first error stops it."""
    t, s = pg.db_host(ctx, p["target"]), pg.db_host(ctx, p["source"])
    start_local(ctx, t, p["maint_port"])
    dump = st.get("dump")
    if not dump:
        raise StateError("no source dump recorded: run the dump step again (sync.resume)")
    log = f"{run_dir(p)}/{t.name}_import.{datetime.datetime.now():%Y%m%d-%H%M%S}.log"
    run(ctx, t, f"mkdir -p -m 700 {q(run_dir(p))}")
    t0 = time.monotonic()
    prog = output.Progress(f"{t.name}: import", st.get("dump_bytes"))
    with output.watching(prog, lambda: remote_int(ctx, s, read_position_command(dump))):
        res = run(ctx, t, guarded(import_command(s.address, dump, bindir(t), p["maint_port"],
                                                 p["settings"]["superuser"], log)), warn=True)
    text = run(ctx, t, f"tail -n 50 {q(log)}", warn=True).stdout
    errors = pg.log_errors(text)
    if res.exited != 0 or errors:
        why = errors[0] if errors else f"exit {res.exited}: {text.strip()[-200:] or res.stderr.strip()[-200:]}"
        raise StateError(f"{t.name}: import of {s.name}'s dump stopped at the first error: {why} "
                         f"(log {log}); the old data directory is kept as {p['kept']}")
    figures = prog.finish(st.get("dump_bytes") or prog.done)
    say(f"{t.name}: dump imported in {time.monotonic() - t0:.1f}s ({figures_text(figures)}; log {log})")
    return {"import_log": log, "import_figures": figures}


def vacuum_target(ctx, p, st):
    t = pg.db_host(ctx, p["target"])
    ensure_running(ctx, t, p["maint_port"])
    pg.vacuum(ctx, t, p["maint_port"], run_dir(p))
    return {}


def verify(ctx, p, ports, attempts=1):
    """Digest comparison; with attempts > 1 retried (writes may be landing, online method)."""
    for i in range(attempts):
        t0 = time.monotonic()
        done, total = [], []
        first = next(iter(ports))

        def measure():
            if not total:
                total.append(len(ports) * compare.table_total(ctx, first, ports[first]))
            return len(done), total[0]

        prog = output.Progress(f"verify {' + '.join(ports)}", unit="tables")
        with output.watching(prog, measure):
            cmp = compare_digests(ctx, ports, on_table=done.append)
        figures = prog.finish(len(done))
        if cmp["equal"]:
            say(f"verified: {len(cmp['tables'])} tables, row counts and checksums equal on "
                f"{' and '.join(cmp['hosts'])} ({time.monotonic() - t0:.1f}s)")
            return {"verified_tables": len(cmp["tables"]), "verify_figures": figures,
                    "rows": sum(sum(r["counts"].values()) // 2 for r in cmp["tables"] if r.get("counts"))}
        if i + 1 < attempts:
            time.sleep(1)
    raise HaError(f"verification failed: {first_diff(cmp)}", HaError.NOT_CONVERGED)


def physical_proof(ctx, p, st, s, t):
    """A pg_basebackup copy proved without reading the tables: pg_verifybackup passed (every
    file as the source sent it), the started target is the same system as the source, both
    list the same databases, and the source's WAL since the copy's end holds no record that can
    carry a committed write (no client could connect: pgpool stopped, maintenance port).
    Returns the step's data, or None (then the tables are compared)."""
    t0 = time.monotonic()
    end = st.get("backup_end_lsn")
    if not st.get("manifest_verified") or not end:
        return None
    port = p["maint_port"]
    got = remote.probe_many(ctx, [s.name, t.name], lambda n: (
        position(ctx, n, port), [r["datname"] for r in remote.sql_rows(
            ctx, pg.db_host(ctx, n), compare.LIST_DBS, port=port)]))
    bad = [r.message for r in got.values() if isinstance(r, HaError)]
    if bad:
        say(f"note: physical proof not possible ({'; '.join(bad)}): comparing every table")
        return None
    (spos, sdbs), (tpos, tdbs) = got[s.name], got[t.name]
    if spos["sysid"] != tpos["sysid"] or sdbs != tdbs:
        say("note: the copy is not the same system or lists other databases than the source: "
            "comparing every table")
        return None
    if spos["lsn"] == end:
        quiet, how = True, f"its WAL has not moved since the copy ended at {end}"
    else:
        quiet, how = compare.wal_quiet(ctx, s, end, spos["lsn"])
    if not quiet:
        say(f"note: {s.name} may have written since the copy ended ({how}): comparing every table")
        return None
    took = round(time.monotonic() - t0, 2)
    say(f"verified: physical copy: {t.name} is {s.name}'s system {spos['sysid']} with the same "
        f"{len(sdbs)} databases, every file checked against the manifest; {s.name}: {how} ({took}s)")
    return {"verified": "physical", "verified_databases": len(sdbs), "verify_seconds": took}


def verify_copy(ctx, p, st):
    """Both backends compared table by table (retried for online: writes keep landing); a
    pg_basebackup copy is proved physically when it can be (physical_proof)."""
    s, t = pg.db_host(ctx, p["source"]), pg.db_host(ctx, p["target"])
    if p["method"] == "online":
        try:
            return verify(ctx, p, {s.name: normal_port(s), t.name: normal_port(t)}, attempts=10)
        except HaError as e:
            if remote.is_dry(ctx):
                raise
            # pgpool attached the copy at the recovery's end: a copy proved different must not
            # serve clients; sync.resume copies again (syncplan.REBUILD)
            try:
                pgpool.detach(ctx, t, t.pgpool_node_id, reason="sync.resync online: copy differs",
                              position=False)
                left = f"{t.name} detached from pgpool"
            except HaError as d:
                left = f"{t.name} could NOT be detached from pgpool ({d.message})"
            raise HaError(f"{e.message}; {left}: its copy differs from {s.name}'s; "
                          "sync.resume copies it again", e.code) from e
    ensure_running(ctx, s, p["maint_port"])
    if not pg.connectable(ctx, t, p["maint_port"]):
        start_local(ctx, t, p["maint_port"])
    if p["method"] == "basebackup":
        proven = physical_proof(ctx, p, st, s, t)
        if proven:
            return proven
    return verify(ctx, p, {s.name: p["maint_port"], t.name: p["maint_port"]})


def _parallel(fn, items):
    with concurrent.futures.ThreadPoolExecutor(len(items)) as ex:
        for f in [ex.submit(fn, i) for i in items]:
            f.result()


def restart_normal(ctx, p, st):
    """Both back on their normal ports (the bulk-load settings go with the restart)."""
    hosts = [pg.db_host(ctx, n) for n in (p["source"], p["target"])]
    _parallel(lambda h: ensure_running(ctx, h, normal_port(h)), hosts)
    return {}


def serves_nobody(ctx, c):
    """True when pgpool runs but accepts no connection: every backend is down in its view
    (it started, or lost them, while the resync had them stopped or on the maintenance port).
    It takes no backend back by itself and serves no client."""
    try:
        backends.read_pool_nodes(ctx, c.name)
    except HaError as exc:
        return NOT_ACCEPTING in exc.message
    return False


def start_pgpool(ctx, p, st):
    """Start pgpool again when this resync stopped it; restart it when it runs serving nobody
    (every backend down in its view: Pacemaker started it elsewhere during the resync)."""
    c = backends.pgpool_cluster(ctx, p["cluster"])
    restarted = None
    if not st.get("pgpool_stopped"):
        if remote.is_dry(ctx) or not serves_nobody(ctx, c):
            say("pgpool was not stopped by this resync: not starting it")
            return {}
        restarted = pool_host(ctx, c)
        if not restarted:
            raise StateError("pgpool accepts no connection and no node is seen running it: "
                             "start it by hand (inv pgpool.start --host HOST)")
        say(f"pgpool on {restarted} runs but accepts no connection (every backend down in its "
            "view): it serves no client; restarting it with the verified backends")
        pgpool.stop(ctx, restarted, reason="sync.resync: pgpool serving nobody")
    host = restarted or st.get("pgpool_host") or p.get("pgpool_host")
    rid = c.vars.get("pgpool_resource")
    if not restarted and rid and not remote.is_dry(ctx):
        vip = pgpool.vip_node(ctx, c)
        if vip and vip != host:
            # the group moved while pgpool was stopped (its node lost power: chaos seed 41
            # step 7); pgpool starts where the group's VIP is now
            say(f"the group (VIP) is on {vip} now, not {host}: pgpool starts there")
            host = vip
    if not restarted and rid and not pgpool.maintenance_set(ctx, pg.db_host(ctx, host), rid) \
            and read_pool(ctx, c):
        say("pgpool already runs")
        return {}
    # The copy was verified equal while pgpool was stopped (no client could write): pgpool
    # must start with every backend up. Started with the status file of its last run (the
    # target down), it would take writes on the source alone until the attach step, and the
    # target would be attached stale.
    words = ["up"] * len(c.hosts)
    for h in c.hosts:
        if pgpool.write_status_file(ctx, c, h.name, words):
            say(f"{h.name}: pgpool_status set to every backend up (the copy is verified)")
    pgpool.start(ctx, host)
    return {"pgpool_restarted": restarted} if restarted else {}


def attach_backends(ctx, p, st):
    """pcp_attach_node for each backend pgpool does not show up."""
    c = backends.pgpool_cluster(ctx, p["cluster"])
    data = backends.read_pool_nodes(ctx, c.name)
    attached = []
    for name in (p["source"], p["target"]):
        h = pg.db_host(ctx, name)
        b = [x for x in data["backends"] if str(x.get("node_id")) == str(h.pgpool_node_id)]
        if b and b[0].get("status") != "up":
            if not remote.is_dry(ctx):  # killed after the verify (chaos seed 11 step 75)
                start_if_down(ctx, h)
            try:
                # not proven by the verify step: pgpool may have served writes since (started
                # by someone else, or it marked the backend down after its start)
                pgpool.attach(ctx, h, h.pgpool_node_id)
            except HaError as exc:
                if exc.code == HaError.REFUSED and name == p["source"] and \
                        backends.statuses(c, data).get(p["target"]) == "up":
                    # never attached stale; but the resync's own work is done (the target is
                    # the verified copy) and pgpool has written to the target alone since
                    return {"attached": attached, **leave_source_detached(p, exc.message)}
                if exc.code == HaError.REFUSED:  # its contents differ: never attached stale
                    raise
                # pgpool restarts its children on failback: SHOW pool_nodes may fail for a moment;
                # verify_pool polls until it answers
                say(f"note: after pcp_attach_node for {name}: {exc.message}")
            attached.append(name)
    return {"attached": attached}


def verify_pool(ctx, p, st):
    """Wait (30 s) until pgpool shows every backend up and none degenerated; with the source
    left detached by the attach step (leave_source_detached), until it shows the target up
    and the source not (said as degenerated, never as in sync)."""
    c = backends.pgpool_cluster(ctx, p["cluster"])
    left = st.get("left_detached")
    deadline = time.monotonic() + 30
    while True:
        try:
            data = backends.read_pool_nodes(ctx, c.name)
            seen = ", ".join(f"{b['host']} {b['status']}" for b in data["backends"])
            now = backends.statuses(c, data)
            if left and now.get(p["target"]) == "up" and now.get(left) != "up":
                say(f"pgpool: {seen}; degenerated: {left} left detached, not in sync (the "
                    f"next db.recover rebuilds it from {p['target']})")
                return {"degenerated": True}
            if not left and not data.get("degenerated") and \
                    all(b.get("status") == "up" for b in data["backends"]):
                break
        except HaError as exc:
            seen = exc.message
        if time.monotonic() > deadline:
            raise HaError(f"pgpool does not show every backend up within 30s: {seen}", HaError.NOT_CONVERGED)
        time.sleep(0.5)
    say("pgpool: " + ", ".join(f"{b['host']} {b['status']}" for b in data["backends"]) + "; replicating")
    return {}


# ---- online


def recovery_script_text(name, pgbin, log=RECOVERY_LOG, port=5432):
    """The packaged script NAME with this host's paths and port filled in."""
    text = (RECOVERY_DIR / name).read_text()
    return text.replace("@PGBIN@", q(pgbin)).replace("@LOG@", q(log)).replace("@PGPORT@", str(int(port)))


def recovery_command_names(ctx, c):
    """The script names pgpool.conf calls (recovery_1st_stage_command, ...), read on a DB host."""
    conf = c.vars.get("pgpool_conf") or "/etc/pgpool2/pgpool.conf"
    names = {"recovery_1st_stage": "recovery_1st_stage", "recovery_2nd_stage": "recovery_2nd_stage"}
    res = probe(ctx, c.hosts[0], f"grep -E '^[[:space:]]*recovery_(1st|2nd)_stage_command' {q(conf)}",
                user="root")
    for line in res.stdout.splitlines():
        m = re.match(r"\s*recovery_(1st|2nd)_stage_command\s*=\s*'([^']*)'", line)
        if m and m.group(2):
            names[f"recovery_{m.group(1)}_stage"] = m.group(2)
    return names


def idle_limit_in_recovery(ctx, c):
    """pgpool.conf's client_idle_limit_in_recovery, read on a DB host (pgpool's default 0 when
    unset; None when the file cannot be read)."""
    conf = c.vars.get("pgpool_conf") or "/etc/pgpool2/pgpool.conf"
    res = probe(ctx, c.hosts[0], f"cat {q(conf)}", user="root")
    if res.exited != 0:
        return None
    value = 0
    for line in res.stdout.splitlines():
        m = re.match(r"\s*client_idle_limit_in_recovery\s*=\s*'?(-?\d+)'?", line)
        if m:
            value = int(m.group(1))
    return value


def install_recovery(ctx, hosts, cluster=None):
    """Install hatasks' recovery scripts into PGDATA of HOSTS (an existing different script is
    kept as NAME.orig-STAMP). Returns {host: [installed names]}."""
    c = backends.pgpool_cluster(ctx, cluster)
    names = recovery_command_names(ctx, c)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = {}
    for name in hosts:
        h = pg.db_host(ctx, name)
        pgdata = h.vars["pgdata"].rstrip("/")
        done = []
        if probe(ctx, h, f"test -f {q(pgdata + '/PG_VERSION')}").exited != 0:
            say(f"{h.name}: no data directory at {pgdata}: recovery scripts not installed there")
            out[h.name] = None
            continue
        for script in RECOVERY_SCRIPTS:
            target = f"{pgdata}/{names.get(script, script)}"
            remote.check_value("script", target)
            body = recovery_script_text(script, bindir(h), port=normal_port(h))
            b64 = base64.b64encode(body.encode()).decode()
            cmd = (f"t={q(target)}; printf %s {q(b64)} | base64 -d > \"$t.hatasks-new\" && "
                   f"chmod 700 \"$t.hatasks-new\" && "
                   f"if [ -f \"$t\" ] && cmp -s \"$t\" \"$t.hatasks-new\"; then rm -f \"$t.hatasks-new\"; "
                   f"echo same; else if [ -f \"$t\" ] && ! grep -q {q(RECOVERY_MARK)} \"$t\"; then "
                   f"cp -p \"$t\" \"$t.orig-{stamp}\"; fi; mv -f \"$t.hatasks-new\" \"$t\"; echo installed; fi")
            res = run(ctx, h, cmd)
            if res.stdout.strip() == "installed" or remote.is_dry(ctx):
                done.append(names.get(script, script))
        say(f"{h.name}: recovery scripts in {pgdata}: "
            + (f"installed {', '.join(done)}" if done else "already up to date"))
        out[h.name] = done
    return out


def install_recovery_scripts(ctx, p, st):
    """hatasks' recovery scripts on both backends; the source must have them."""
    done = install_recovery(ctx, [p["source"], p["target"]], p["cluster"])
    if done.get(p["source"]) is None:
        raise StateError(f"{p['source']}: cannot install the recovery scripts (no data directory)")
    return {"installed": done}


def kept_list(ctx, t, pgdata):
    """The kept data dirs the recovery scripts listed next to PGDATA, oldest first."""
    res = probe(ctx, t, f"cat {q(pgdata + '.hatasks-kept')} 2>/dev/null || true")
    return [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]


#: counts pgpool's processes busy with an online recovery (a pcp_recovery_node at work)
RECOVERY_BUSY = "ps -eo args= | grep -c '^pgpool: PCP: processing recovery request'"


def recovery_busy(ctx, c):
    """Hosts whose pgpool is running an online recovery now. A recovery goes on inside pgpool
    after the pcp client that asked for it died (a killed or interrupted sync.resync)."""
    res = remote.probe_many(ctx, c.hosts,
                            lambda n: probe(ctx, pg.db_host(ctx, n), RECOVERY_BUSY, user="root"))
    return [n for n, r in res.items()
            if not isinstance(r, HaError) and (r.stdout or "0").strip() not in ("", "0")]


def wait_recovery_ended(ctx, c, t, timeout):
    """An earlier attempt's online recovery still at work: wait for it to end (pgpool ends it
    by itself: done, or failed at its recovery_timeout) rather than start a second one that
    stops the target under it. True when that recovery left the target up in pgpool."""
    busy = recovery_busy(ctx, c)
    if not busy or remote.is_dry(ctx):
        return False
    say(f"pgpool on {', '.join(busy)} is still running an online recovery (an earlier "
        f"attempt's): waiting up to {timeout}s for it to end before anything else")
    deadline = time.monotonic() + timeout
    while recovery_busy(ctx, c):
        if time.monotonic() > deadline:
            raise StateError(f"pgpool on {', '.join(busy)} still runs an online recovery after "
                             f"{timeout}s; not starting another (read {RECOVERY_LOG} there)")
        time.sleep(2)
    data = backends.read_pool_nodes(ctx, c.name)
    me = [b for b in data["backends"] if str(b.get("node_id")) == str(t.pgpool_node_id)]
    return bool(me and me[0].get("status") == "up")


def recover_online(ctx, p, st):
    """pcp_recovery_node for the target, judged by what it printed (it exits 0 on failure)."""
    c = backends.pgpool_cluster(ctx, p["cluster"])
    t = pg.db_host(ctx, p["target"])
    before = kept_list(ctx, t, p["pgdata"])
    if wait_recovery_ended(ctx, c, t, p.get("timeout", 900)):
        # the earlier recovery attached the target: the verify step that follows decides
        after = kept_list(ctx, t, p["pgdata"])
        say(f"{t.name}: attached by the earlier attempt's online recovery; not run again")
        return {"kept": after[-1] if after else None, "recovery_seconds": None}
    stop_standby_copy(ctx, p, t) if not remote.is_dry(ctx) else None
    try:
        data = backends.read_pool_nodes(ctx, c.name)
    except HaError as exc:
        if remote.is_dry(ctx) or (NOT_ACCEPTING not in exc.message and pool_host(ctx, c)):
            raise  # pgpool runs and fails otherwise; serving nobody, or stopped: served again
        serve_source_alone(ctx, p, c)
        data = backends.read_pool_nodes(ctx, c.name)
    me = [b for b in data["backends"] if str(b.get("node_id")) == str(t.pgpool_node_id)]
    if me and me[0].get("status") == "up":
        pgpool.detach(ctx, t, t.pgpool_node_id, reason="sync.resync online", position=False)
    t0 = time.monotonic()
    s = pg.db_host(ctx, p["source"])
    prog = output.Progress(f"{t.name}: online recovery (1st stage copy)",
                           sizes(p).get("copy") or sizes(p).get("data"))
    streamed = (f"{q(bindir(s) + '/psql')} -X -At -p {normal_port(s)} -d postgres "
                f"-c {q(BASEBACKUP_STREAMED)}")
    with output.watching(prog, lambda: remote_int(ctx, s, streamed)):
        res = pgpool.run_pcp(ctx, c, "recovery_node", t.pgpool_node_id, timeout=p.get("timeout", 900))
    if remote.is_dry(ctx):
        return {}
    # pcp_recovery_node (pgpool-II 4.3) exits 0 even when a stage failed: read what it said
    said = f"{res.stdout}\n{res.stderr}"
    if "ERROR" in said or "Command Successful" not in said:
        lines = [ln.strip() for ln in said.splitlines() if ln.strip()]
        log = probe(ctx, pg.db_host(ctx, p["source"]), f"tail -n 5 {q(RECOVERY_LOG)}").stdout.strip()
        raise StateError(f"pcp_recovery_node for {t.name} failed: {' '.join(lines)[-300:]}; "
                         f"{p['source']}:{RECOVERY_LOG}: {log.splitlines()[-1] if log else '(empty)'}")
    pgpool.wait_backend(ctx, c, t.pgpool_node_id, "up", 60)
    took = time.monotonic() - t0
    after = kept_list(ctx, t, p["pgdata"])
    new = after[len(before):] if after[:len(before)] == before else after[-1:]
    kept = new[0] if new else None
    if p.get("kept_list_len") is not None:
        # the first one listed since the plan is the target's own data (earlier attempts)
        since = after[int(p["kept_list_len"]):]
        kept = since[0] if since else kept
    figures = prog.finish(remote_int(ctx, t, du_command(p["pgdata"]), user="root") or prog.done)
    say(f"{t.name}: online recovery done in {took:.1f}s ({figures_text(figures)} copied); "
        f"old data directory kept as {kept}")
    left = remote.sql_rows(ctx, s, "SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = %s",
                           (SLOT,), port=normal_port(s))
    if left and int(left[0]["n"]):
        remote.sql_rows(ctx, s, "SELECT pg_drop_replication_slot(%s)", (SLOT,), port=normal_port(s))
        say(f"{s.name}: dropped the leftover replication slot {SLOT}")
    return {"kept": kept, "recovery_seconds": round(took, 1), "recovery_figures": figures}


#: step name (as in syncplan.METHOD_STEPS and the journal's checkpoints) -> the function running it
STEPS = {
    "record_newest": record_newest,
    "stop_pgpool": stop_pgpool,
    "source_maint": restart_source_maint,
    "vacuum_source": vacuum_source,
    "dump_source": dump_source_and_target,
    "stop_target": stop_target,
    "keep_datadir": keep_datadir,
    "initdb_target": initdb_target,
    "basebackup": basebackup_target,
    "copy_config": copy_config,
    "start_target_maint": start_target_maint,
    "import": import_dump,
    "vacuum_target": vacuum_target,
    "verify": verify_copy,
    "restart_normal": restart_normal,
    "start_pgpool": start_pgpool,
    "attach": attach_backends,
    "verify_pool": verify_pool,
    "install_recovery": install_recovery_scripts,
    "recover_online": recover_online,
}
