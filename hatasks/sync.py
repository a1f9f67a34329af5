"""Data resync of the DB backends (runbook 5.2.2.2 (f)): plan, run, resume, roll back, clean up.

`sync.resync` rebuilds the TARGET backend from the SOURCE backend (the one holding the newest data,
taken from the journal's newest-data record and cross-checked against pgpool now) by one of three
methods, printing every step and host before asking for confirmation:

- dump (the runbook's procedure with today's commands): pgpool stopped (only the pgpool resource:
  the cluster stack and the VIP stay), the source restarted on a maintenance port, pg_dumpall of
  the source (checked complete and error-free) and a safety dump of the target, the target's data
  directory KEPT as data.YYYY-MM-DD-HHMMSS, initdb with the source's encoding/locale/checksums, the
  target's own configuration files copied back, the dump streamed source -> target into psql
  (ON_ERROR_STOP), every table of every database verified (exact row counts and a content
  checksum), both restarted on their normal ports, pgpool started, both backends up.
- basebackup: the same frame, the new data directory a physical copy (pg_basebackup) of the source.
- online: no maintenance window: pgpool's online recovery (pcp_recovery_node) with hatasks' own
  recovery scripts (`sync.install-recovery`); applications only wait during the short 2nd stage.

Every step is checkpointed in the journal: `sync.resume` continues an interrupted resync,
`sync.rollback` puts the target's old data directory back, `sync.cleanup` archives or deletes the
dumps and logs (runbook step E). Kept data directories are only removed by name.
"""

import base64
import concurrent.futures
import contextlib
import datetime
import pathlib
import re
import shlex
import signal
import threading
import time

from psycopg2 import sql

from hatasks import journal, output, pg, pgpool, remote
from hatasks.base import task
from hatasks.errors import HaError, StateError, UsageError

ACTION = "sync.resync"
METHODS = ("dump", "basebackup", "online")
DEFAULT_MAINT_PORT = 1234
DEFAULT_WORKDIR = "/var/lib/postgresql/hatasks-resync"
RECOVERY_DIR = pathlib.Path(__file__).resolve().parent / "recovery"
RECOVERY_SCRIPTS = ("recovery_1st_stage", "recovery_2nd_stage", "pgpool_remote_start")
RECOVERY_MARK = "hatasks-recovery v1"
RECOVERY_LOG = "/var/log/postgresql/hatasks-recovery.log"
SLOT = "hatasks_recovery"
MARKER = ".hatasks-resync"
#: top-level files of PGDATA that belong to the server itself (never copied to the new data dir)
PG_OWNED = ("PG_VERSION", "postmaster.pid", "postmaster.opts", "current_logfiles", "backup_label*",
            "tablespace_map*", "standby.signal", "recovery.signal", "backup_manifest", MARKER)
SSH_OPTS = "-o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=10"
#: disk margin on top of the estimates (fraction)
DISK_MARGIN = 0.10
KEPT_RE = r"\.(\d{4}-\d{2}-\d{2}(-\d{6})?|failed-\d{4}-\d{2}-\d{2}-\d{6}|partial-\d{4}-\d{2}-\d{2}-\d{6})$"


def _q(value):
    return shlex.quote(str(value))


def _say(*lines):
    for line in lines:
        print(line, flush=True)


# =========================================================================== pure: source choice


def choose_source(hosts, pool_now, recorded, source=None, target=None, force=False):
    """Decide SOURCE and TARGET from the evidence (pure).

    ``hosts``: DB host names (inventory order). ``pool_now``: pool.parse_pool_nodes' dict now, or
    None when pgpool does not answer. ``recorded``: journal.newest()'s record or None.
    Returns {"source", "target", "evidence": [str], "tentative": bool}; tentative = pgpool calls
    the backends in sync and nothing says which is newer (the caller must find equal contents
    or refuse). Raises HaError REFUSED naming the evidence when the source is unknown or
    contradicted, UsageError for names that are not DB hosts or source == target.
    """
    for opt, name in (("source", source), ("target", target)):
        if name is not None and name not in hosts:
            raise UsageError(f"--{opt} {name}: not a DB host (DB hosts: {', '.join(hosts)})")
    if source is not None and source == target:
        raise UsageError(f"--source and --target are both {source}: nothing to copy")
    evidence, tentative = [], False
    rec = (recorded or {}).get("newest")
    rec_sync = bool(((recorded or {}).get("evidence") or {}).get("in_sync")) if recorded else None
    if recorded:
        evidence.append(f"journal: newest data on {rec} (recorded {recorded.get('ts')}"
                        f"{', backends in sync' if rec_sync else ''})")
    else:
        evidence.append("journal: no newest-data record")
    contra = (recorded or {}).get("contradicted_by") or []
    if contra:
        evidence.append("journal: later degenerated views name " + ", ".join(
            f"{c.get('newest')} ({c.get('ts')})" for c in contra) + " (split brain?)")
    up = down = []
    if pool_now is None:
        evidence.append("pgpool: not answering (cannot cross-check)")
    else:
        up = [b["host"] for b in pool_now.get("backends", []) if b.get("status") == "up"]
        down = [b["host"] for b in pool_now.get("backends", []) if b.get("status") != "up"]
        evidence.append("pgpool now: " + ", ".join(
            f"{b['host']} {b.get('status')}" for b in pool_now.get("backends", [])))

    def refuse(why):
        raise HaError(f"refusing to resync: {why} (evidence: {'; '.join(evidence)})", HaError.REFUSED)

    if source is None:
        if contra:
            refuse(f"contradicted: the first record since the backends were in sync says {rec}, "
                   f"a later view says {contra[-1].get('newest')}; both may hold writes the "
                   f"other lacks: check them, then name the winner with --source and --force")
        if pool_now is None:
            if not rec:
                refuse("the newest-data backend is unknown; name it with --source after checking")
            source = rec
        elif not up:
            refuse("pgpool has no backend up")
        elif down:
            now = up[0] if len(up) == 1 else (pool_now.get("newest") or up[0])
            if rec and rec != now and not rec_sync:
                refuse(f"contradicted: the journal says {rec}, pgpool now writes only to {now}")
            source = now
        else:
            tentative = not rec or rec_sync
            source = rec or pool_now.get("main") or up[0]
        if source not in hosts:
            refuse(f"the newest-data backend {source} is not a DB host of the inventory")
    else:
        if pool_now is not None and down and source in down and up and not force:
            refuse(f"--source {source} contradicts pgpool, which writes only to {', '.join(up)} "
                   f"(use --force if you are sure)")
        if contra and not force:
            refuse(f"--source {source}: the newest-data record is contradicted (split brain?); "
                   f"use --force if you are sure")
        if rec and rec != source and not rec_sync and not force:
            refuse(f"--source {source} contradicts the journal's record ({rec}); use --force if sure")
    if target is None:
        others = [h for h in hosts if h != source]
        if len(others) != 1:
            raise UsageError(f"give --target (candidates: {', '.join(others)})")
        target = others[0]
    if source == target:
        raise UsageError(f"source and target are both {source}: nothing to copy")
    return {"source": source, "target": target, "evidence": evidence, "tentative": tentative}


# =========================================================================== pure: plan

STEPS = {
    "dump": ["record_newest", "stop_pgpool", "source_maint", "vacuum_source", "dump_source",
             "stop_target", "keep_datadir", "initdb_target", "copy_config", "start_target_maint",
             "import", "vacuum_target", "verify", "restart_normal", "start_pgpool", "attach",
             "verify_pool"],
    "basebackup": ["record_newest", "stop_pgpool", "source_maint", "vacuum_source", "stop_target",
                   "keep_datadir", "basebackup", "copy_config", "start_target_maint", "verify",
                   "restart_normal", "start_pgpool", "attach", "verify_pool"],
    "online": ["record_newest", "install_recovery", "recover_online", "verify", "verify_pool"],
}
#: steps redone together when a resume finds the first ones done but not the last
REBUILD = {"dump": ["initdb_target", "copy_config", "start_target_maint", "import"],
           "basebackup": ["basebackup", "copy_config", "start_target_maint"]}


def steps_for(method, vacuum=False):
    return [s for s in STEPS[method] if vacuum or s not in ("vacuum_source", "vacuum_target")]


def describe(step, p):
    """(host, what) for one step of plan params ``p`` (pure)."""
    s, t, m = p["source"], p["target"], p["maint_port"]
    pgdata = p["pgdata"]
    work = p["workdir"]
    pool_host = p.get("pgpool_host") or "?"
    kept = p.get("kept") or f"{pgdata}.{p['stamp']}"
    table = {
        "record_newest": ("-", "journal the newest-data backend from SHOW pool_nodes (before pgpool stops)"),
        "stop_pgpool": (pool_host, "stop the pgpool resource only (maintenance + pgpool -m fast stop); "
                        "cluster stack and VIP stay"),
        "source_maint": (s, f"restart PostgreSQL on maintenance port {m} (pg_ctl stop; pg_ctl -o '-p {m}' start)"),
        "vacuum_source": (s, f"vacuumdb -p {m} -a -f -z -v"),
        "dump_source": (s, f"pg_dumpall -p {m} -c --if-exists -v -f {work}/{p['stamp']}/{s}_dumpall.*.sql; "
                        f"checked complete and error-free; meanwhile safety pg_dumpall of {t}'s current data "
                        f"into {work}/{p['stamp']}/ on {t}"),
        "stop_target": (t, "pg_ctl -m fast stop"),
        "keep_datadir": (t, f"mv {pgdata} {kept}  (kept; never deleted by this task)"),
        "initdb_target": (t, f"initdb -D {pgdata} with {s}'s encoding, locale and data-checksum setting"),
        "basebackup": (t, f"pg_basebackup -h {s} -p {m} -D {pgdata} -X stream -c fast "
                       "(no standby.signal: an independent primary)"),
        "copy_config": (t, f"copy {t}'s own config files back from {kept} (postgresql.conf, pg_hba.conf, "
                        "pg_ident.conf, postgresql.auto.conf, site files such as recovery scripts)"),
        "start_target_maint": (t, f"pg_ctl -o '-p {m}' start"),
        "import": (t, f"ssh postgres@{s} cat DUMP | psql -p {m} -v ON_ERROR_STOP=1 (stops at the first error)"),
        "vacuum_target": (t, f"vacuumdb -p {m} -a -f -z -v"),
        "verify": (f"{s}+{t}", "every table of every database: exact row count and content checksum equal"),
        "restart_normal": (f"{s}+{t}", "restart PostgreSQL on the normal port"),
        "start_pgpool": (pool_host, "start the pgpool resource again (maintenance off, cleanup)"),
        "attach": ("-", f"pcp_attach_node for {t} if pgpool does not show it up"),
        "verify_pool": ("-", "SHOW pool_nodes: both backends up, not degenerated; row counts equal"),
        "install_recovery": (s, f"install hatasks' recovery scripts into {pgdata} (sync.install-recovery)"),
        "recover_online": ("-", f"pcp_recovery_node for {t}: 1st stage pg_basebackup from {s} while "
                           f"applications work, {t}'s data dir kept as {pgdata}.<time>; 2nd stage "
                           "(clients held): catch up, promote; pgpool attaches it"),
    }
    if p["method"] == "online" and step == "verify":
        return (f"{s}+{t}", "every table: exact row count and content checksum equal (retried while writes land)")
    return table[step]


def make_plan(p):
    """The ordered plan: [{"n", "step", "host", "what"}] for params ``p`` (pure)."""
    return [dict(zip(("n", "step", "host", "what"), (i + 1, step, *describe(step, p))))
            for i, step in enumerate(steps_for(p["method"], p.get("vacuum")))]


def print_plan(p, plan, done=()):
    _say(f"resync plan: {p['method']} from {p['source']} (source) to {p['target']} (target), "
         f"cluster {p['cluster']}, maintenance port {p['maint_port']}, work dir {p['workdir']}")
    for ev in p.get("evidence", []):
        _say(f"  evidence: {ev}")
    for item in plan:
        mark = "done " if item["step"] in done else ""
        _say(f"  {item['n']:2}. {mark}[{item['host']}] {item['what']}")


# =========================================================================== pure: journal state


def resume_state(records, cluster):
    """The state of the latest resync of CLUSTER from journal records (pure).

    Follows ``resume_of`` links back to the first attempt. Returns None when there is no resync,
    else {"op", "chain", "params", "done": [steps], "data": {merged checkpoint data},
    "finished": bool (the latest attempt ended "done"), "outcome", "message",
    "rolled_back": bool, "cleaned": bool}."""
    ops = {}
    order = []
    for r in records:
        # nested operations count too: db.recover runs the resync inside its own operation
        if r.get("cluster") != cluster or not r.get("op"):
            continue
        o = ops.get(r["op"])
        if o is None:
            o = ops[r["op"]] = {"id": r["op"], "action": r.get("action"), "args": r.get("args") or {},
                                "checkpoints": [], "end": None, "started": False}
            order.append(r["op"])
        ev = r.get("event")
        if ev == "start":
            o["started"] = True
        elif ev == "checkpoint":
            o["checkpoints"].append((r.get("step"), r.get("data") or {}))
        elif ev in ("done", "failed"):
            o["end"] = r
    resyncs = [i for i in order if ops[i]["action"] == ACTION and ops[i]["started"]]
    if not resyncs:
        return None
    latest = resyncs[-1]
    chain = [latest]
    while ops[chain[-1]]["args"].get("resume_of") in ops:
        chain.append(ops[chain[-1]]["args"]["resume_of"])
    chain.reverse()
    done, data = [], {}
    for op_id in chain:
        for step, d in ops[op_id]["checkpoints"]:
            if step == "redo":
                done = [s for s in done if s not in d.get("steps", [])]
                continue
            if step not in done:
                done.append(step)
            data.update(d)
    end = ops[latest]["end"]
    after = order[order.index(latest) + 1:]

    def did(action):
        return any(ops[i]["action"] == action and ops[i]["args"].get("of") in chain
                   and ops[i]["end"] and ops[i]["end"].get("event") == "done" for i in after)

    return {"op": latest, "chain": chain, "params": data.get("params"), "done": done, "data": data,
            "finished": bool(end and end.get("event") == "done"),
            "outcome": end.get("event") if end else None,
            "message": end.get("message") if end else None,
            "rolled_back": did("sync.rollback"), "cleaned": did("sync.cleanup")}


def steps_to_run(method, vacuum, done):
    """The steps still to run after ``done`` (pure): a half-done rebuild group is redone whole."""
    steps = steps_for(method, vacuum)
    group = REBUILD.get(method, [])
    redo = []
    if group and group[0] in done and group[-1] not in done:
        redo = [s for s in group if s in done]
    return [s for s in steps if s not in done or s in redo], redo


# =========================================================================== commands (pure)


def bootstrap_role_literal(name):
    """The role name as pg_dumpall writes it (quoted only when needed)."""
    if re.match(r"^[a-z_][a-z0-9_$]*$", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def import_command(src_addr, dump_path, pgbin, port, superuser, log_path):
    """Shell (bash) run as postgres on the target: stream the dump from the source over ssh,
    skip only the bootstrap superuser's DROP ROLE / CREATE ROLE of the globals section (it exists
    in a fresh cluster), psql with ON_ERROR_STOP into the maintenance port."""
    role = bootstrap_role_literal(superuser)
    awk = ("BEGIN { g = 1 } /^\\\\connect / { g = 0 } "
           "g && ($0 == \"DROP ROLE IF EXISTS \" su \";\" || $0 == \"CREATE ROLE \" su \";\") "
           "{ print \"-- hatasks: skipped (bootstrap superuser exists): \" $0; next } { print }")
    inner = (f"set -o pipefail; ssh {SSH_OPTS} postgres@{_q(src_addr)} {_q('cat -- ' + _q(dump_path))} "
             f"| awk -v su={_q(role)} {_q(awk)} "
             f"| {_q(pgbin + '/psql')} -X -q -v ON_ERROR_STOP=1 -p {int(port)} -d postgres -f - "
             f">{_q(log_path)} 2>&1")
    return f"bash -c {_q(inner)}"


def guarded(cmd):
    """CMD run so that it dies with our ssh session: in its own process group, killed (TERM to the
    group) as soon as a watchdog can no longer write to the session (a newline every 2 s on
    stdout: hatasks was interrupted or lost the connection). Without it a long pg_dumpall / import / pg_basebackup would go on alone and
    race with the resume."""
    watch = "while printf '\\n'; do sleep 2; done 2>/dev/null; kill -TERM -- \"-$1\""
    inner = (f"setsid bash -c {_q(cmd)} </dev/null & p=$!; "
             f"setsid bash -c {_q(watch)} watchdog \"$p\" </dev/null 2>/dev/null & w=$!; "
             "wait $p; rc=$?; kill -TERM -- -$w 2>/dev/null; exit $rc")
    return f"bash -c {_q(inner)}"


def dump_command(pgbin, port, flags, dest, tmp_sql, tmp_log):
    return (f"umask 077 && cd {_q(dest)} && {_q(pgbin + '/pg_dumpall')} -p {int(port)} "
            f"{' '.join(flags)} -f {_q(tmp_sql)} 2> {_q(tmp_log)}")


def initdb_command(pgbin, pgdata, settings):
    parts = [_q(pgbin + "/initdb"), "-D", _q(pgdata), "-U", _q(settings["superuser"]),
             "-E", _q(settings["encoding"]), f"--lc-collate={_q(settings['collate'])}",
             f"--lc-ctype={_q(settings['ctype'])}"]
    if settings.get("provider") == "i":
        parts += ["--locale-provider=icu", f"--icu-locale={_q(settings['icu_locale'])}"]
    if settings.get("checksums"):
        parts.append("--data-checksums")
    if settings.get("wal_segsize_mb"):
        parts.append(f"--wal-segsize={int(settings['wal_segsize_mb'])}")
    return " ".join(parts)


def copy_config_command(old, new):
    """Copy the top-level files of OLD that are not the server's own into NEW (as postgres)."""
    skip = "|".join(PG_OWNED)
    return (f"for f in {_q(old)}/* {_q(old)}/.[!.]*; do [ -f \"$f\" ] || continue; "
            f"case ${{f##*/}} in {skip}) continue ;; esac; cp -p -- \"$f\" {_q(new)}/ || exit 1; "
            f"echo \"${{f##*/}}\"; done")


def basebackup_command(pgbin, src_addr, port, superuser, pgdata):
    return (f"{_q(pgbin + '/pg_basebackup')} -h {_q(src_addr)} -p {int(port)} -U {_q(superuser)} "
            f"-D {_q(pgdata)} -X stream -c fast && rm -f {_q(pgdata + '/standby.signal')} "
            f"{_q(pgdata + '/recovery.signal')}")


def digest_query(schema, table):
    """Exact row count and an order-independent content checksum of one table (psycopg2.sql)."""
    return sql.SQL(
        "SELECT count(*), coalesce(sum(hashtextextended(hatasks_row::text, 0)), 0)::text "
        "FROM {}.{} AS hatasks_row"
    ).format(sql.Identifier(schema), sql.Identifier(table))


def diff_digests(per_host):
    """Pure: {host: {db: {table: [count, sum]}}} -> (rows, differences)."""
    hosts = list(per_host)
    rows, diffs = [], []
    dbs = sorted({db for d in per_host.values() for db in d})
    for db in dbs:
        if any(db not in per_host[h] for h in hosts):
            row = {"database": db, "table": None, "equal": False,
                   "note": "database missing on " + ", ".join(h for h in hosts if db not in per_host[h])}
            rows.append(row)
            diffs.append(row)
            continue
        for t in sorted({t for h in hosts for t in per_host[h][db]}):
            vals = {h: per_host[h][db].get(t) for h in hosts}
            equal = None not in vals.values() and len({tuple(v) for v in vals.values()}) == 1
            row = {"database": db, "table": t, "counts": {h: (v[0] if v else None) for h, v in vals.items()},
                   "checksums": {h: (v[1] if v else None) for h, v in vals.items()}, "equal": equal}
            rows.append(row)
            if not equal:
                diffs.append(row)
    return rows, diffs


# =========================================================================== I/O helpers


def _cluster(ctx, cluster=None):
    if cluster:
        return pgpool.db_cluster(ctx, cluster)
    dbs = remote.inventory(ctx).clusters_of_kind("db")
    if not dbs:
        raise UsageError("the inventory has no DB cluster")
    return pgpool.db_cluster(ctx, dbs[0].name)


def _host(ctx, name):
    return pg.db_host(ctx, name)


def _pgbin(h):
    return h.vars["pg_bindir"].rstrip("/")


def _port(h):
    return int(h.vars.get("pg_port") or 5432)


def _run(ctx, h, cmd, user="postgres", **kw):
    return remote.run(ctx, h, cmd, user=user, **kw)


def _probe(ctx, h, cmd, user="postgres"):
    return remote.run(ctx, h, cmd, user=user, probe=True, warn=True)


def digests(ctx, host, port):
    """{db: {"schema.table": [count, checksum]}} of every connectable non-template database."""
    h = remote.get_host(ctx, host)
    out = {}
    for db in [r["datname"] for r in remote.sql_rows(ctx, h, pg.LIST_DBS, port=port)]:
        tables = {}
        with remote.pg_connect(ctx, h, port=port, dbname=db) as conn:
            with conn.cursor() as cur:
                cur.execute(pg.LIST_TABLES)
                for schema, table in cur.fetchall():
                    cur.execute(digest_query(schema, table))
                    n, s = cur.fetchone()
                    tables[f"{schema}.{table}"] = [int(n), str(s)]
        out[db] = tables
    return out


def compare_digests(ctx, ports):
    """Checksums of both backends in parallel: {"equal", "tables", "differences", "hosts"}."""
    res = remote.probe_many(ctx, list(ports), lambda n: digests(ctx, n, ports[n]))
    bad = [r.message for r in res.values() if isinstance(r, HaError)]
    if bad:
        raise StateError("cannot verify: " + "; ".join(bad))
    rows, diffs = diff_digests(res)
    return {"hosts": list(res), "equal": not diffs, "tables": rows, "differences": diffs}


def _first_diff(cmp):
    d = cmp["differences"][0]
    what = f"{d['database']}.{d['table']}" if d.get("table") else d["database"]
    detail = d.get("note") or ", ".join(f"{h}={d['counts'][h]} rows/{d['checksums'][h]}" for h in d["counts"])
    return f"{len(cmp['differences'])} table(s) differ, first {what}: {detail}"


def local_ok(ctx, h, port):
    """SELECT 1 through the server's own Unix socket as postgres (peer): works on a fresh
    cluster whose superuser has no password yet."""
    cmd = f"{_q(_pgbin(h) + '/psql')} -X -At -p {int(port)} -d postgres -c 'SELECT 1'"
    res = _probe(ctx, h, cmd)
    return res.exited == 0 and res.stdout.strip() == "1"


#: settings of the freshly built target while it is loaded on the maintenance port (a crash
#: during the load means redoing the rebuild anyway); restart_normal drops them
BULK_LOAD = ("-c maintenance_work_mem=256MB -c max_wal_size=4GB -c checkpoint_timeout=1h "
             "-c synchronous_commit=off -c full_page_writes=off -c autovacuum=off")


def bulk_start_command(h, port, timeout=60):
    log = pg._ctl_log(h)
    return (f"{_q(_pgbin(h) + '/pg_ctl')} -D {_q(h.vars['pgdata'])} -o {_q(f'-p {int(port)} ' + BULK_LOAD)} "
            f"-l {_q(log)} -w -t {int(timeout)} start")


def start_local(ctx, h, port, timeout=60):
    """pg_ctl start on PORT with the bulk-load settings, verified through the Unix socket (for the
    freshly built target: its superuser has no password before the import)."""
    st = pg.server_state(ctx, h)
    if st["running"] and st["port"] == port and local_ok(ctx, h, port):
        return
    if st["running"]:
        pg.stop(ctx, h, "fast")
    _say(f"{h.name}: starting PostgreSQL on port {port} (bulk-load settings: {BULK_LOAD})")
    res = _run(ctx, h, bulk_start_command(h, port, timeout), warn=True, timeout=timeout + 30)
    deadline = time.monotonic() + timeout
    while not local_ok(ctx, h, port):
        if res.exited != 0 or time.monotonic() > deadline:
            errors = pg.recent_log_errors(ctx, h, port)
            raise StateError(f"{h.name}: PostgreSQL did not start on port {port}: "
                             f"{errors[-1] if errors else (res.stderr or res.stdout).strip()[-200:]}")
        time.sleep(0.5)
    _say(f"{h.name}: PostgreSQL accepts local connections on port {port}")


def ensure_running(ctx, h, port):
    """PostgreSQL on H listening on PORT (restart it there when it runs on another port)."""
    st = pg.server_state(ctx, h)
    if st["running"] and st["port"] == port and pg.connectable(ctx, h, port):
        return
    if st["running"]:
        pg.stop(ctx, h, "fast")
    pg.start(ctx, h, None if port == _port(h) else port)


def _read_pool(ctx, c):
    try:
        return pgpool.read_pool_nodes(ctx, c.name)
    except HaError:
        return None


def _pool_host(ctx, c):
    rs = pgpool.resource_state(ctx, c)
    if rs and rs.get("node"):
        return rs["node"]
    where = pgpool.running_on(ctx, c)
    return where[0] if where else None


def _pg_settings(ctx, h, port):
    rows = remote.sql_rows(ctx, h, (
        "SELECT pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate, "
        "d.datctype AS ctype, d.datlocprovider AS provider, d.daticulocale AS icu_locale, "
        "(SELECT rolname FROM pg_authid WHERE oid = 10) AS superuser, "
        "current_setting('data_checksums') = 'on' AS checksums, "
        "current_setting('wal_segment_size') AS wal_segment_size, "
        "current_setting('server_version_num')::int AS version_num "
        "FROM pg_database d WHERE d.datname = 'template1'"), port=port)
    s = dict(rows[0])
    m = re.match(r"^(\d+)MB$", s.pop("wal_segment_size") or "")
    s["wal_segsize_mb"] = int(m.group(1)) if m else None
    return s


def _df(ctx, h, path):
    """(mount point, free bytes) of the filesystem holding PATH (or its nearest existing parent)."""
    cmd = (f"p={_q(path)}; while [ ! -e \"$p\" ]; do p=$(dirname \"$p\"); done; "
           f"df -P -B1 \"$p\" | tail -n 1")
    res = _probe(ctx, h, cmd, user="root")
    parts = res.stdout.split()
    if res.exited != 0 or len(parts) < 6:
        raise StateError(f"{h.name}: cannot read free disk space for {path}: {res.stderr.strip()}")
    return parts[5], int(parts[3])


def _du(ctx, h, path):
    res = _probe(ctx, h, f"du -sB1 {_q(path)} 2>/dev/null | cut -f1", user="root")
    out = res.stdout.strip()
    return int(out) if out.isdigit() else 0


def _gb(n):
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


# =========================================================================== preflight


def disk_needs(method, src_db_bytes, src_data_bytes, tgt_db_bytes, safety=True):
    """Bytes needed per (host role, path kind) (pure): dump file on the source's work dir,
    safety dump on the target's work dir, the new data dir next to the target's PGDATA."""
    need = {}
    if method == "dump":
        need[("source", "workdir")] = src_db_bytes
        if safety:
            need[("target", "workdir")] = tgt_db_bytes
        need[("target", "pgdata")] = src_db_bytes
    else:
        need[("target", "pgdata")] = src_data_bytes
    return {k: int(v * (1 + DISK_MARGIN)) for k, v in need.items()}


def check_fit(needs, where):
    """Pure: ``where`` = {(role, kind): (host, mount, free)}; sum needs per filesystem; return
    problems (list of str with the numbers)."""
    per_fs = {}
    for key, n in needs.items():
        host, mount, free = where[key]
        e = per_fs.setdefault((host, mount), {"free": free, "need": 0, "what": []})
        e["need"] += n
        e["what"].append(f"{key[1]} {_gb(n)}")
    problems = []
    for (host, mount), e in per_fs.items():
        if e["need"] > e["free"]:
            problems.append(f"{host}:{mount} needs {_gb(e['need'])} ({' + '.join(e['what'])}) "
                            f"but has {_gb(e['free'])} free")
    return problems


def preflight(ctx, p):
    """Connectivity, source readable, target->source postgres ssh, free disk. Returns numbers;
    raises REFUSED with the numbers when something does not fit."""
    s, t = _host(ctx, p["source"]), _host(ctx, p["target"])
    reach = remote.probe_many(ctx, [s, t], lambda n: _probe(ctx, n, "true", user="root"))
    bad = [r.message for r in reach.values() if isinstance(r, HaError)]
    if bad:
        raise HaError("preflight: " + "; ".join(bad), HaError.UNREACHABLE)
    src_port = p.get("source_port") or _port(s)
    try:
        rows = remote.sql_rows(ctx, s, "SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint AS b "
                               "FROM pg_database WHERE datallowconn", port=src_port)
    except HaError as exc:
        raise HaError(f"preflight: source {s.name} is not readable: {exc.message}", HaError.REFUSED) from None
    src_db = int(rows[0]["b"])
    tgt_db = 0
    if pg.connectable(ctx, t, _port(t)):
        rows = remote.sql_rows(ctx, t, "SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint AS b "
                               "FROM pg_database WHERE datallowconn", port=_port(t))
        tgt_db = int(rows[0]["b"])
    src_data = _du(ctx, s, p["pgdata"])
    needs = disk_needs(p["method"], src_db, src_data, tgt_db)
    parent = p["pgdata"].rstrip("/").rsplit("/", 1)[0] or "/"
    where = {}
    for (role, kind) in needs:
        h = s if role == "source" else t
        path = p["workdir"] if kind == "workdir" else parent
        mount, free = _df(ctx, h, path)
        where[(role, kind)] = (h.name, mount, free)
    problems = check_fit(needs, where)
    info = {"source_db_bytes": src_db, "source_data_bytes": src_data, "target_db_bytes": tgt_db,
            "needs": {f"{k[0]}:{k[1]}": v for k, v in needs.items()},
            "free": {f"{k[0]}:{k[1]}": f"{v[0]}:{v[1]} {_gb(v[2])}" for k, v in where.items()}}
    _say(f"preflight: source {s.name} holds {_gb(src_db)} in its databases ({_gb(src_data)} data dir); "
         + "; ".join(f"{k} needs {_gb(v)}, free {info['free'][k]}" for k, v in info["needs"].items()))
    if problems:
        raise HaError("preflight: not enough disk: " + "; ".join(problems), HaError.REFUSED)
    # the hops the method needs between the hosts, as postgres
    hops = {"dump": [(t, s)], "online": [(s, t)], "basebackup": []}[p["method"]]
    for frm, to in hops:
        res = _probe(ctx, frm, f"ssh {SSH_OPTS} postgres@{_q(to.address)} true")
        if res.exited != 0:
            raise HaError(f"preflight: postgres on {frm.name} cannot ssh to postgres@{to.name} "
                          f"({to.address}): {(res.stderr or res.stdout).strip()[-200:]}", HaError.REFUSED)
    return info


# =========================================================================== the steps
# Each step takes (ctx, p, st) with p = the plan params, st = data of earlier checkpoints, and
# returns a dict of data to checkpoint. Steps check their own preconditions, so a resume can
# re-enter any of them.


def step_record_newest(ctx, p, st):
    rec = pgpool.record_newest(ctx, p["cluster"], f"sync.resync {p['source']} -> {p['target']}")
    return {"newest_recorded": rec.get("newest") or (rec.get("previous") or {}).get("newest")}


def step_stop_pgpool(ctx, p, st):
    c = _cluster(ctx, p["cluster"])
    host = p.get("pgpool_host") or _pool_host(ctx, c)
    if not host:
        _say("pgpool is not running: nothing to stop")
        return {"pgpool_stopped": False}
    res = pgpool.stop(ctx, host, "fast", reason="sync.resync")
    return {"pgpool_stopped": bool(res.get("stopped")) or bool(st.get("pgpool_stopped")),
            "pgpool_host": host}


def step_source_maint(ctx, p, st):
    ensure_running(ctx, _host(ctx, p["source"]), p["maint_port"])
    return {}


def _workdir(p):
    return f"{p['workdir']}/{p['stamp']}"


def step_vacuum_source(ctx, p, st):
    s = _host(ctx, p["source"])
    ensure_running(ctx, s, p["maint_port"])
    _run(ctx, s, f"mkdir -p -m 700 {_q(_workdir(p))}")
    pg.vacuum(ctx, s, p["maint_port"], _workdir(p))
    return {}


def dump_source(ctx, p):
    """pg_dumpall of the source on the maintenance port into the work dir, checked complete."""
    s = _host(ctx, p["source"])
    ensure_running(ctx, s, p["maint_port"])
    dest = _workdir(p)
    _run(ctx, s, f"mkdir -p -m 700 {_q(dest)}")
    version = pg.server_version_num(ctx, s, p["maint_port"])
    flags = pg.dumpall_flags(version) + ["--if-exists"]
    stamp = datetime.datetime.now().strftime(pg.STAMP_FORMAT)
    names = pg.dump_names(s.name, stamp)
    t0 = time.monotonic()
    res = _run(ctx, s, guarded(dump_command(_pgbin(s), p["maint_port"], flags, dest, names["tmp_sql"],
                                            names["tmp_log"])), warn=True)
    d = _q(dest)
    log = _run(ctx, s, f"cat {d}/{_q(names['tmp_log'])}", warn=True)
    tail = _run(ctx, s, f"tail -c 300 {d}/{_q(names['tmp_sql'])}", warn=True)
    errors = pg.log_errors(log.stdout, "dumpall")
    complete = "database cluster dump complete" in tail.stdout
    if res.exited != 0 or errors or not complete:
        _run(ctx, s, f"mv -f -- {d}/{_q(names['tmp_log'])} {d}/{_q(names['failed_log'])}", warn=True)
        why = errors[-1] if errors else (f"pg_dumpall exited {res.exited}" if res.exited else
                                         "the dump does not end with 'database cluster dump complete'")
        raise StateError(f"{s.name}: pg_dumpall of the source failed: {why} "
                         f"(log {dest}/{names['failed_log']}); the target was not touched")
    _run(ctx, s, f"mv -- {d}/{_q(names['tmp_log'])} {d}/{_q(names['log'])} && "
                 f"mv -- {d}/{_q(names['tmp_sql'])} {d}/{_q(names['sql'])}")
    size = _run(ctx, s, f"stat -c %s {d}/{_q(names['sql'])}").stdout.strip()
    _say(f"{s.name}: dump {dest}/{names['sql']} ({size} bytes) complete and error-free "
         f"in {time.monotonic() - t0:.1f}s")
    return {"dump": f"{dest}/{names['sql']}", "dump_log": f"{dest}/{names['log']}",
            "dump_bytes": int(size) if size.isdigit() else None}


def safety_dump(ctx, p):
    """Safety pg_dumpall of the target's current data (runbook C); skipped with a note when the
    target's PostgreSQL does not run (its data dir is kept anyway)."""
    t = _host(ctx, p["target"])
    st = pg.server_state(ctx, t)
    if not st["running"] or not pg.connectable(ctx, t, st["port"] or _port(t)):
        _say(f"{t.name}: PostgreSQL not running: no safety dump (its data directory is kept instead)")
        return {"safety_dump": None}
    _run(ctx, t, f"mkdir -p -m 700 {_q(_workdir(p))}")
    res = pg.dumpall(ctx, t, st["port"], _workdir(p), quiet=True)
    _say(f"{t.name}: safety dump {res['dump']} ({res['bytes']} bytes)")
    return {"safety_dump": res["dump"]}


def step_dump_source(ctx, p, st):
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        fs = ex.submit(dump_source, ctx, p)
        ft = ex.submit(safety_dump, ctx, p)
        out = fs.result()
        out.update(ft.result())
    return out


def step_stop_target(ctx, p, st):
    t = _host(ctx, p["target"])
    pg.stop(ctx, t, "fast")
    return {}


def step_keep_datadir(ctx, p, st):
    t = _host(ctx, p["target"])
    if pg.server_state(ctx, t)["running"]:
        pg.stop(ctx, t, "fast")
    kept = p["kept"]
    cmd = (f"if [ -e {_q(kept)} ]; then echo 'already exists: {kept}' >&2; exit 1; fi; "
           f"if [ -e {_q(p['pgdata'])} ]; then mv -T -- {_q(p['pgdata'])} {_q(kept)}; "
           f"else echo 'no data dir {p['pgdata']}' >&2; exit 1; fi")
    _run(ctx, t, cmd, user="root")
    _say(f"{t.name}: old data directory kept as {kept}")
    return {"kept": kept}


def _clear_new_datadir(ctx, t, p, why):
    """Before (re)building: stop PostgreSQL on the target, move a partial new data dir aside.
    Refuses when the kept copy is missing (it would be the only copy of the old data)."""
    pgdata, kept = p["pgdata"], p["kept"]
    if _probe(ctx, t, f"test -d {_q(kept)}", user="root").exited != 0:
        raise StateError(f"{t.name}: the kept data directory {kept} is missing: refusing to touch {pgdata}")
    st = pg.server_state(ctx, t)
    if st["running"]:
        pg.stop(ctx, t, "immediate")
    if _probe(ctx, t, f"test -e {_q(pgdata)}", user="root").exited == 0:
        ours = _probe(ctx, t, f"test -f {_q(pgdata + '/' + MARKER)}", user="root").exited == 0
        if ours:
            _run(ctx, t, f"rm -rf -- {_q(pgdata)}", user="root")
            _say(f"{t.name}: removed the unfinished new data directory ({why})")
        else:
            aside = f"{pgdata}.partial-{datetime.datetime.now():%Y-%m-%d-%H%M%S}"
            _run(ctx, t, f"mv -T -- {_q(pgdata)} {_q(aside)}", user="root")
            _say(f"{t.name}: moved the unfinished new data directory aside as {aside} ({why})")


def step_initdb_target(ctx, p, st):
    t = _host(ctx, p["target"])
    _clear_new_datadir(ctx, t, p, "rebuilding")
    _run(ctx, t, f"install -d -o postgres -g postgres -m 700 {_q(p['pgdata'])}", user="root")
    _run(ctx, t, initdb_command(_pgbin(t), p["pgdata"], p["settings"]) + " >/dev/null")
    _run(ctx, t, f"echo {_q(p['op'])} > {_q(p['pgdata'] + '/' + MARKER)}")
    _say(f"{t.name}: initdb done ({p['settings']['encoding']}, {p['settings']['collate']}, "
         f"checksums {'on' if p['settings'].get('checksums') else 'off'})")
    return {}


def step_basebackup(ctx, p, st):
    t, s = _host(ctx, p["target"]), _host(ctx, p["source"])
    ensure_running(ctx, s, p["maint_port"])
    _clear_new_datadir(ctx, t, p, "rebuilding")
    t0 = time.monotonic()
    _run(ctx, t, guarded(basebackup_command(_pgbin(t), s.address, p["maint_port"],
                                            p["settings"]["superuser"], p["pgdata"])))
    _run(ctx, t, f"echo {_q(p['op'])} > {_q(p['pgdata'] + '/' + MARKER)}")
    _say(f"{t.name}: pg_basebackup from {s.name} done in {time.monotonic() - t0:.1f}s")
    return {}


def step_copy_config(ctx, p, st):
    t = _host(ctx, p["target"])
    res = _run(ctx, t, copy_config_command(p["kept"], p["pgdata"]))
    files = res.stdout.split()
    _say(f"{t.name}: copied back from {p['kept']}: {', '.join(files) or 'nothing'}")
    return {"config_files": files}


def step_start_target_maint(ctx, p, st):
    start_local(ctx, _host(ctx, p["target"]), p["maint_port"])
    return {}


def step_import(ctx, p, st):
    t, s = _host(ctx, p["target"]), _host(ctx, p["source"])
    start_local(ctx, t, p["maint_port"])
    dump = st.get("dump")
    if not dump:
        raise StateError("no source dump recorded: run the dump step again (sync.resume)")
    log = f"{_workdir(p)}/{t.name}_import.{datetime.datetime.now():%Y%m%d-%H%M%S}.log"
    _run(ctx, t, f"mkdir -p -m 700 {_q(_workdir(p))}")
    t0 = time.monotonic()
    res = _run(ctx, t, guarded(import_command(s.address, dump, _pgbin(t), p["maint_port"],
                                              p["settings"]["superuser"], log)), warn=True)
    text = _run(ctx, t, f"tail -n 50 {_q(log)}", warn=True).stdout
    errors = pg.log_errors(text)
    if res.exited != 0 or errors:
        why = errors[0] if errors else f"exit {res.exited}: {text.strip()[-200:] or res.stderr.strip()[-200:]}"
        raise StateError(f"{t.name}: import of {s.name}'s dump stopped at the first error: {why} "
                         f"(log {log}); the old data directory is kept as {p['kept']}")
    _say(f"{t.name}: dump imported in {time.monotonic() - t0:.1f}s (log {log})")
    return {"import_log": log}


def step_vacuum_target(ctx, p, st):
    t = _host(ctx, p["target"])
    ensure_running(ctx, t, p["maint_port"])
    pg.vacuum(ctx, t, p["maint_port"], _workdir(p))
    return {}


def verify(ctx, p, ports, attempts=1):
    """Digest comparison; with attempts > 1 retried (writes may be landing, online method)."""
    for i in range(attempts):
        t0 = time.monotonic()
        cmp = compare_digests(ctx, ports)
        if cmp["equal"]:
            _say(f"verified: {len(cmp['tables'])} tables, row counts and checksums equal on "
                 f"{' and '.join(cmp['hosts'])} ({time.monotonic() - t0:.1f}s)")
            return {"verified_tables": len(cmp["tables"]),
                    "rows": sum(sum(r["counts"].values()) // 2 for r in cmp["tables"] if r.get("counts"))}
        if i + 1 < attempts:
            time.sleep(1)
    raise HaError(f"verification failed: {_first_diff(cmp)}", HaError.NOT_CONVERGED)


def step_verify(ctx, p, st):
    s, t = _host(ctx, p["source"]), _host(ctx, p["target"])
    if p["method"] == "online":
        return verify(ctx, p, {s.name: _port(s), t.name: _port(t)}, attempts=10)
    ensure_running(ctx, s, p["maint_port"])
    if not pg.connectable(ctx, t, p["maint_port"]):
        start_local(ctx, t, p["maint_port"])
    return verify(ctx, p, {s.name: p["maint_port"], t.name: p["maint_port"]})


def _parallel(fn, items):
    with concurrent.futures.ThreadPoolExecutor(len(items)) as ex:
        for f in [ex.submit(fn, i) for i in items]:
            f.result()


def step_restart_normal(ctx, p, st):
    hosts = [_host(ctx, n) for n in (p["source"], p["target"])]
    _parallel(lambda h: ensure_running(ctx, h, _port(h)), hosts)
    return {}


def step_start_pgpool(ctx, p, st):
    if not st.get("pgpool_stopped"):
        _say("pgpool was not stopped by this resync: not starting it")
        return {}
    c = _cluster(ctx, p["cluster"])
    host = st.get("pgpool_host") or p.get("pgpool_host")
    rid = c.vars.get("pgpool_resource")
    if rid and not pgpool.maintenance_set(ctx, _host(ctx, host), rid) and _read_pool(ctx, c):
        _say("pgpool already runs")
        return {}
    pgpool.start(ctx, host)
    return {}


def step_attach(ctx, p, st):
    c = _cluster(ctx, p["cluster"])
    data = pgpool.read_pool_nodes(ctx, c.name)
    attached = []
    for name in (p["source"], p["target"]):
        h = _host(ctx, name)
        b = [x for x in data["backends"] if str(x.get("node_id")) == str(h.pgpool_node_id)]
        if b and b[0].get("status") != "up":
            try:
                pgpool.attach(ctx, h, h.pgpool_node_id)
            except HaError as exc:
                # pgpool restarts its children on failback: SHOW pool_nodes may fail for a moment;
                # verify_pool polls until it answers
                _say(f"note: after pcp_attach_node for {name}: {exc.message}")
            attached.append(name)
    return {"attached": attached}


def step_verify_pool(ctx, p, st):
    c = _cluster(ctx, p["cluster"])
    deadline = time.monotonic() + 30
    while True:
        try:
            data = pgpool.read_pool_nodes(ctx, c.name)
            seen = ", ".join(f"{b['host']} {b['status']}" for b in data["backends"])
            if not data.get("degenerated") and all(b.get("status") == "up" for b in data["backends"]):
                break
        except HaError as exc:
            seen = exc.message
        if time.monotonic() > deadline:
            raise HaError(f"pgpool does not show every backend up within 30s: {seen}", HaError.NOT_CONVERGED)
        time.sleep(0.5)
    _say("pgpool: " + ", ".join(f"{b['host']} {b['status']}" for b in data["backends"]) + "; replicating")
    return {}


# ---- online


def recovery_script_text(name, pgbin, log=RECOVERY_LOG, port=5432):
    text = (RECOVERY_DIR / name).read_text()
    return text.replace("@PGBIN@", _q(pgbin)).replace("@LOG@", _q(log)).replace("@PGPORT@", str(int(port)))


def recovery_command_names(ctx, c):
    """The script names pgpool.conf calls (recovery_1st_stage_command, ...), read on a DB host."""
    conf = c.vars.get("pgpool_conf") or "/etc/pgpool2/pgpool.conf"
    names = {"recovery_1st_stage": "recovery_1st_stage", "recovery_2nd_stage": "recovery_2nd_stage"}
    res = _probe(ctx, c.hosts[0], f"grep -E '^[[:space:]]*recovery_(1st|2nd)_stage_command' {_q(conf)}",
                 user="root")
    for line in res.stdout.splitlines():
        m = re.match(r"\s*recovery_(1st|2nd)_stage_command\s*=\s*'([^']*)'", line)
        if m and m.group(2):
            names[f"recovery_{m.group(1)}_stage"] = m.group(2)
    return names


def install_recovery(ctx, hosts, cluster=None):
    """Install hatasks' recovery scripts into PGDATA of HOSTS (an existing different script is
    kept as NAME.orig-STAMP). Returns {host: [installed names]}."""
    c = _cluster(ctx, cluster)
    names = recovery_command_names(ctx, c)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = {}
    for name in hosts:
        h = _host(ctx, name)
        pgdata = h.vars["pgdata"].rstrip("/")
        done = []
        if _probe(ctx, h, f"test -f {_q(pgdata + '/PG_VERSION')}").exited != 0:
            _say(f"{h.name}: no data directory at {pgdata}: recovery scripts not installed there")
            out[h.name] = None
            continue
        for script in RECOVERY_SCRIPTS:
            target = f"{pgdata}/{names.get(script, script)}"
            remote.check_value("script", target)
            body = recovery_script_text(script, _pgbin(h), port=_port(h))
            b64 = base64.b64encode(body.encode()).decode()
            cmd = (f"t={_q(target)}; printf %s {_q(b64)} | base64 -d > \"$t.hatasks-new\" && "
                   f"chmod 700 \"$t.hatasks-new\" && "
                   f"if [ -f \"$t\" ] && cmp -s \"$t\" \"$t.hatasks-new\"; then rm -f \"$t.hatasks-new\"; "
                   f"echo same; else if [ -f \"$t\" ] && ! grep -q {_q(RECOVERY_MARK)} \"$t\"; then "
                   f"cp -p \"$t\" \"$t.orig-{stamp}\"; fi; mv -f \"$t.hatasks-new\" \"$t\"; echo installed; fi")
            res = _run(ctx, h, cmd)
            if res.stdout.strip() == "installed" or remote.is_dry(ctx):
                done.append(names.get(script, script))
        _say(f"{h.name}: recovery scripts in {pgdata}: "
             + (f"installed {', '.join(done)}" if done else "already up to date"))
        out[h.name] = done
    return out


def step_install_recovery(ctx, p, st):
    done = install_recovery(ctx, [p["source"], p["target"]], p["cluster"])
    if done.get(p["source"]) is None:
        raise StateError(f"{p['source']}: cannot install the recovery scripts (no data directory)")
    return {"installed": done}


def _kept_list(ctx, t, pgdata):
    res = _probe(ctx, t, f"cat {_q(pgdata + '.hatasks-kept')} 2>/dev/null || true")
    return [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]


def step_recover_online(ctx, p, st):
    c = _cluster(ctx, p["cluster"])
    t = _host(ctx, p["target"])
    before = _kept_list(ctx, t, p["pgdata"])
    data = pgpool.read_pool_nodes(ctx, c.name)
    me = [b for b in data["backends"] if str(b.get("node_id")) == str(t.pgpool_node_id)]
    if me and me[0].get("status") == "up":
        pgpool.detach(ctx, t, t.pgpool_node_id, reason="sync.resync online")
    t0 = time.monotonic()
    res = pgpool.run_pcp(ctx, c, "recovery_node", t.pgpool_node_id, timeout=p.get("timeout", 900))
    if remote.is_dry(ctx):
        return {}
    # pcp_recovery_node (pgpool-II 4.3) exits 0 even when a stage failed: read what it said
    said = f"{res.stdout}\n{res.stderr}"
    if "ERROR" in said or "Command Successful" not in said:
        lines = [ln.strip() for ln in said.splitlines() if ln.strip()]
        log = _probe(ctx, _host(ctx, p["source"]), f"tail -n 5 {_q(RECOVERY_LOG)}").stdout.strip()
        raise StateError(f"pcp_recovery_node for {t.name} failed: {' '.join(lines)[-300:]}; "
                         f"{p['source']}:{RECOVERY_LOG}: {log.splitlines()[-1] if log else '(empty)'}")
    pgpool.wait_backend(ctx, c, t.pgpool_node_id, "up", 60)
    took = time.monotonic() - t0
    after = _kept_list(ctx, t, p["pgdata"])
    new = after[len(before):] if after[:len(before)] == before else after[-1:]
    kept = new[0] if new else None
    _say(f"{t.name}: online recovery done in {took:.1f}s; old data directory kept as {kept}")
    s = _host(ctx, p["source"])
    left = remote.sql_rows(ctx, s, "SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = %s",
                           (SLOT,), port=_port(s))
    if left and int(left[0]["n"]):
        remote.sql_rows(ctx, s, "SELECT pg_drop_replication_slot(%s)", (SLOT,), port=_port(s))
        _say(f"{s.name}: dropped the leftover replication slot {SLOT}")
    return {"kept": kept, "recovery_seconds": round(took, 1)}


STEP_FUNCS = {name[5:]: fn for name, fn in globals().items() if name.startswith("step_")}


# =========================================================================== driver


def _params(ctx, c, method, choice, maint_port, vacuum, workdir, force):
    s = _host(ctx, choice["source"])
    pgdata = s.vars["pgdata"].rstrip("/")
    t = _host(ctx, choice["target"])
    if t.vars["pgdata"].rstrip("/") != pgdata:
        pgdata_t = t.vars["pgdata"].rstrip("/")
    else:
        pgdata_t = pgdata
    now = datetime.datetime.now()
    return {"cluster": c.name, "method": method, "source": s.name, "target": t.name,
            "maint_port": int(maint_port), "vacuum": bool(vacuum), "force": bool(force),
            "workdir": workdir, "pgdata": pgdata_t, "stamp": now.strftime("%Y%m%d-%H%M%S"),
            "kept": f"{pgdata_t}.{now:%Y-%m-%d-%H%M%S}", "pgpool_host": _pool_host(ctx, c),
            "evidence": choice["evidence"]}


def _check_method(method):
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    return method


def _both_up(ctx, s, t):
    return pg.connectable(ctx, s, _port(s)) and pg.connectable(ctx, t, _port(t))


def prepare(ctx, source=None, target=None, method="dump", vacuum=False, force=False, maint_port=None,
            workdir=None, cluster=None):
    """Validate, choose source/target from the evidence, build the plan params (probes only).
    Returns (params, plan) or (None, reason) when there is nothing to do."""
    _check_method(method)
    c = _cluster(ctx, cluster)
    hosts = [h.name for h in c.hosts]
    for opt, v in (("source", source), ("target", target)):
        if v is not None:
            remote.check_value(opt, v)
            _host(ctx, v)
    maint_port = pg.check_port(maint_port if maint_port is not None else
                               c.vars.get("maintenance_port") or DEFAULT_MAINT_PORT, "port")
    workdir = pg.check_dest(workdir or c.vars.get("resync_dir") or DEFAULT_WORKDIR)
    journal.check_unlocked(ctx, c.name)
    pool_now = _read_pool(ctx, c)
    choice = choose_source(hosts, pool_now, journal.newest(ctx, c.name), source, target, force)
    s, t = _host(ctx, choice["source"]), _host(ctx, choice["target"])
    if not pg.connectable(ctx, s, _port(s)):
        st = pg.server_state(ctx, s)
        raise HaError(f"refusing to resync: the source {s.name} is down (PostgreSQL "
                      f"{'runs on port ' + str(st['port']) if st['running'] else 'not running'}; "
                      f"evidence: {'; '.join(choice['evidence'])})", HaError.REFUSED)
    if pool_now and pool_now.get("degenerated") and not remote.is_dry(ctx):
        pgpool.record_newest(ctx, c.name, "sync.resync: pgpool seen degenerated")
    degenerated = bool(pool_now and pool_now.get("degenerated"))
    if not degenerated and _both_up(ctx, s, t):
        cmp = compare_digests(ctx, {s.name: _port(s), t.name: _port(t)})
        target_up = pool_now is None or all(b.get("status") == "up" for b in pool_now.get("backends", []))
        if cmp["equal"] and target_up and not force:
            return None, (f"nothing to do: {s.name} and {t.name} are both up and identical "
                          f"({len(cmp['tables'])} tables, row counts and checksums); --force to resync anyway")
        if not cmp["equal"] and choice["tentative"] and not force:
            raise HaError(f"refusing to resync: the backends differ ({_first_diff(cmp)}) but nothing "
                          f"says which holds the newest data (evidence: {'; '.join(choice['evidence'])}); "
                          f"name it with --source", HaError.REFUSED)
        if cmp["equal"]:
            choice["evidence"].append("contents equal now (row counts + checksums)")
        else:
            choice["evidence"].append(f"contents differ: {_first_diff(cmp)}")
    p = _params(ctx, c, method, choice, maint_port, vacuum, workdir, force)
    if method == "online":
        # the recovery scripts append the kept dir to this list: rollback finds it from here
        p["kept_list_len"] = len(_kept_list(ctx, t, p["pgdata"]))
    return p, make_plan(p)


@contextlib.contextmanager
def interruptible():
    """Ctrl-C (SIGINT) stops at once: fabric would otherwise wait for the running remote command
    to end. The handler closes every ssh connection (the guarded remote commands then die with
    their session) and raises KeyboardInterrupt; the journal records the interruption and
    sync.resume continues from the last checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        threading.Thread(target=remote.close_all, daemon=True).start()
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def run_steps(ctx, op, p, done, st):
    todo, redo = steps_to_run(p["method"], p["vacuum"], done)
    if redo:
        _say(f"resume: redoing {', '.join(redo)} (the rebuild was not finished)")
        op.checkpoint("redo", steps=redo)
    plan = {i["step"]: i for i in make_plan(dict(p, kept=st.get("kept") or p.get("kept")))}
    total = len(plan)
    for step in todo:
        item = plan[step]
        _say(f"[{item['n']}/{total}] {step} [{item['host']}]: {item['what']}")
        t0 = time.monotonic()
        data = STEP_FUNCS[step](ctx, dict(p, kept=st.get("kept") or p.get("kept")), st) or {}
        st.update(data)
        data["seconds"] = round(time.monotonic() - t0, 2)
        op.checkpoint(step, **data)
    return st


def summary(p, st, t_total):
    return {"method": p["method"], "source": p["source"], "target": p["target"],
            "kept_datadir": st.get("kept"), "dump": st.get("dump"), "safety_dump": st.get("safety_dump"),
            "verified_tables": st.get("verified_tables"), "seconds": round(t_total, 1)}


def resync(ctx, source=None, target=None, method="dump", vacuum=False, force=False, yes=False,
           maint_port=None, workdir=None, cluster=None):
    """Step function: the whole resync (plan, confirm, run, verify). Returns a summary dict, or
    {"nothing_to_do": reason}. Under --dry: plan + probes only."""
    p, plan = prepare(ctx, source, target, method, vacuum, force, maint_port, workdir, cluster)
    if p is None:
        _say(plan)
        return {"nothing_to_do": plan}
    print_plan(p, plan)
    info = preflight(ctx, p)
    if remote.is_dry(ctx):
        _say("[dry] plan and probes only; nothing was changed")
        return {"dry": True, "plan": plan, "preflight": info}
    s = _host(ctx, p["source"])
    p["settings"] = _pg_settings(ctx, s, _port(s))
    args = {k: p[k] for k in ("method", "source", "target", "maint_port", "vacuum", "force")}
    t0 = time.monotonic()
    with journal.operation(ctx, p["cluster"], ACTION, args, yes=yes,
                           summary=f"{method} resync {p['source']} -> {p['target']}") as op:
        p["op"] = op.id
        op.checkpoint("plan", params=p, preflight=info)
        with interruptible():
            st = run_steps(ctx, op, p, [], {})
        result = summary(p, st, time.monotonic() - t0)
        op.note("resync summary", **result)
    _say(f"resync done in {result['seconds']}s: {p['target']} rebuilt from {p['source']} ({method}); "
         f"old data dir kept: {result['kept_datadir']}")
    return result


def state(ctx, cluster=None):
    c = _cluster(ctx, cluster)
    return c, resume_state(journal.Journal(ctx).records(), c.name)


def resume(ctx, yes=False, cluster=None):
    """Continue the latest interrupted resync from its last completed step."""
    c, s = state(ctx, cluster)
    if s is None:
        raise StateError("no resync in the journal to resume")
    if s["finished"]:
        raise StateError(f"the latest resync ({s['op']}) finished; nothing to resume")
    if s["rolled_back"]:
        raise StateError(f"the latest resync ({s['op']}) was rolled back; start a new sync.resync")
    p = s["params"]
    if not p:
        raise StateError(f"resync {s['op']} stopped before its plan was journaled: start it again")
    print_plan(p, make_plan(dict(p, kept=s["data"].get("kept") or p.get("kept"))), s["done"])
    _say(f"last attempt: {s['outcome'] or 'interrupted'}: {s['message'] or '(no end record)'}")
    if remote.is_dry(ctx):
        return {"dry": True}
    args = {k: p[k] for k in ("method", "source", "target", "maint_port", "vacuum", "force")}
    args["resume_of"] = s["op"]
    t0 = time.monotonic()
    with journal.operation(ctx, c.name, ACTION, args, yes=yes,
                           summary=f"resume {p['method']} resync {p['source']} -> {p['target']}") as op:
        p = dict(p, op=op.id)
        st = dict(s["data"])
        st.pop("params", None)
        with interruptible():
            run_steps(ctx, op, p, list(s["done"]), st)
        result = summary(p, st, time.monotonic() - t0)
        op.note("resync summary", **result)
    _say(f"resync resumed and done: {p['target']} rebuilt from {p['source']}")
    return result


def rollback(ctx, yes=False, cluster=None):
    """Put the target's old data dir back and the cluster as before the latest resync."""
    c, s = state(ctx, cluster)
    if s is None or not s["params"]:
        raise StateError("no resync in the journal to roll back")
    if s["finished"]:
        raise StateError(f"resync {s['op']} finished and was verified: nothing to roll back "
                         "(the old data dir is still kept; remove it with sync.cleanup --remove-datadir)")
    if s["rolled_back"]:
        raise StateError(f"resync {s['op']} was already rolled back")
    p, data = s["params"], s["data"]
    t, src = _host(ctx, p["target"]), _host(ctx, p["source"])
    kept = data.get("kept")
    if not kept and p["method"] == "online" and p.get("kept_list_len") is not None:
        # the online recovery failed after its 1st stage moved the data dir: the scripts listed it
        new = _kept_list(ctx, t, p["pgdata"])[int(p["kept_list_len"]):]
        kept = new[0] if new else None
    _say(f"rollback of resync {s['op']} ({p['method']} {p['source']} -> {p['target']}); done steps: "
         f"{', '.join(s['done']) or 'none'}")
    if remote.is_dry(ctx):
        _say(f"[dry] would restore {kept or '(no kept dir)'} as {p['pgdata']} on {t.name}, restart both "
             "on their normal ports, start pgpool")
        return {"dry": True}
    with journal.operation(ctx, c.name, "sync.rollback", {"of": s["op"]}, yes=yes,
                           summary=f"roll back resync {s['op']}") as op:
        restored = None
        if kept:
            exists = _probe(ctx, t, f"test -d {_q(kept)}", user="root").exited == 0
            if not exists:
                raise StateError(f"{t.name}: kept data directory {kept} is missing: cannot roll back")
            if pg.server_state(ctx, t)["running"]:
                pg.stop(ctx, t, "fast")
            failed = f"{p['pgdata']}.failed-{datetime.datetime.now():%Y-%m-%d-%H%M%S}"
            _run(ctx, t, f"if [ -e {_q(p['pgdata'])} ]; then mv -T -- {_q(p['pgdata'])} {_q(failed)}; fi; "
                         f"mv -T -- {_q(kept)} {_q(p['pgdata'])}", user="root")
            restored = kept
            op.checkpoint("restore_datadir", restored=kept, failed_copy=failed)
            _say(f"{t.name}: {kept} is {p['pgdata']} again (the unfinished copy is kept as {failed})")
        for h in (src, t):
            try:
                ensure_running(ctx, h, _port(h))
            except HaError as exc:
                _say(f"{h.name}: PostgreSQL does not start on its normal port: {exc.message}")
                if h is src:
                    raise
        op.checkpoint("restart_normal")
        if p["method"] == "online":
            rows = remote.sql_rows(ctx, src, "SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = %s",
                                   (SLOT,), port=_port(src))
            if rows and int(rows[0]["n"]):
                remote.sql_rows(ctx, src, "SELECT pg_drop_replication_slot(%s)", (SLOT,), port=_port(src))
                _say(f"{src.name}: dropped the replication slot {SLOT} of the failed recovery")
        if data.get("pgpool_stopped"):
            host = data.get("pgpool_host") or p.get("pgpool_host")
            rid = c.vars.get("pgpool_resource")
            if not rid or pgpool.maintenance_set(ctx, _host(ctx, host), rid) or not _read_pool(ctx, c):
                pgpool.start(ctx, host)
            op.checkpoint("start_pgpool")
        pool_now = _read_pool(ctx, c)
        if pool_now:
            _say("pgpool: " + ", ".join(f"{b['host']} {b['status']}" for b in pool_now["backends"]))
        op.note("rollback summary", restored=restored)
    return {"restored": restored}


# ---- cleanup


def cleanup(ctx, archive=None, delete=False, remove_datadir=None, host=None, yes=False, cluster=None):
    """Archive (tar.gz into ARCHIVE) or delete the resync work dirs (dumps, logs) on the DB hosts;
    remove a kept data dir only when named."""
    c = _cluster(ctx, cluster)
    if archive is None and not delete and not remove_datadir:
        raise UsageError("give --archive DIR or --delete (dumps and logs), and/or --remove-datadir NAME")
    if archive is not None and delete:
        raise UsageError("--archive and --delete exclude each other")
    if archive is not None:
        archive = pg.check_dest(archive)
    hosts = [_host(ctx, host)] if host else [_host(ctx, h.name) for h in c.hosts]
    workdir = pg.check_dest(c.vars.get("resync_dir") or DEFAULT_WORKDIR)
    _, s = state(ctx, c.name)
    active = s and not s["finished"] and not s["rolled_back"]
    if remove_datadir:
        remote.check_value("remove-datadir", remove_datadir)
        if "/" in remove_datadir:
            raise UsageError("--remove-datadir takes the directory's name (e.g. data.2026-11-25-171500), not a path")
    with journal.operation(ctx, c.name, "sync.cleanup",
                           {"archive": archive, "delete": delete or None, "remove_datadir": remove_datadir,
                            "host": host, "of": s["op"] if s else None}, yes=yes) as op:
        done = {}
        for h in hosts:
            if archive is not None or delete:
                res = _probe(ctx, h, f"ls -1A {_q(workdir)} 2>/dev/null || true", user="root")
                runs = [n for n in res.stdout.split() if re.match(r"^\d{8}-\d{6}$", n)]
                if active and s["params"] and s["params"].get("stamp") in runs:
                    runs.remove(s["params"]["stamp"])
                    _say(f"{h.name}: keeping {workdir}/{s['params']['stamp']} (resync {s['op']} is unfinished)")
                for r in runs:
                    if archive is not None:
                        tar = f"{archive}/resync-{h.name}-{r}.tar.gz"
                        _run(ctx, h, f"umask 077 && mkdir -p -m 700 {_q(archive)} && tar -czf {_q(tar)} -C {_q(workdir)} "
                                     f"{_q(r)} && rm -rf -- {_q(workdir + '/' + r)}", user="root")
                    else:
                        _run(ctx, h, f"rm -rf -- {_q(workdir + '/' + r)}", user="root")
                done[h.name] = runs
                _say(f"{h.name}: {'archived into ' + archive if archive else 'deleted'}: "
                     f"{', '.join(runs) or 'nothing'}")
            if remove_datadir:
                pgdata = h.vars["pgdata"].rstrip("/")
                base = pgdata.rsplit("/", 1)
                if not re.match("^" + re.escape(base[1]) + KEPT_RE, remove_datadir):
                    raise UsageError(f"--remove-datadir {remove_datadir}: not a data dir kept by hatasks "
                                     f"({base[1]}.YYYY-MM-DD-HHMMSS, .failed-..., .partial-...)")
                path = f"{base[0]}/{remove_datadir}"
                if active and path == (s["data"].get("kept") or ""):
                    raise HaError(f"{path} is the kept data dir of unfinished resync {s['op']}: "
                                  "finish it (sync.resume) or roll it back first", HaError.REFUSED)
                if _probe(ctx, h, f"test -d {_q(path)}", user="root").exited != 0:
                    _say(f"{h.name}: no {path}")
                    continue
                _run(ctx, h, f"rm -rf -- {_q(path)}", user="root")
                _run(ctx, h, f"f={_q(pgdata + '.hatasks-kept')}; if [ -f \"$f\" ]; then "
                             f"grep -vxF {_q(path)} \"$f\" > \"$f.tmp\"; mv -f \"$f.tmp\" \"$f\"; fi; true",
                     warn=True)
                _say(f"{h.name}: removed {path}")
                done.setdefault("removed", []).append(f"{h.name}:{path}")
        op.note("cleanup summary", **{k: v for k, v in done.items()})
    return done


def kept_dirs(ctx, cluster=None):
    """Kept data dirs per DB host (name, size)."""
    c = _cluster(ctx, cluster)
    out = {}
    for h in c.hosts:
        pgdata = h.vars["pgdata"].rstrip("/")
        d, b = pgdata.rsplit("/", 1)
        res = _probe(ctx, h, f"cd {_q(d)} && for x in {_q(b)}.*; do [ -d \"$x\" ] && du -sB1 \"$x\"; done; true",
                     user="root")
        out[h.name] = [{"name": ln.split("\t")[1], "bytes": int(ln.split("\t")[0])}
                       for ln in res.stdout.splitlines() if "\t" in ln]
    return out


# =========================================================================== tasks


@task(name="resync", help={
    "source": "backend with the newest data (default: journal record, cross-checked with pgpool)",
    "target": "backend to rebuild (default: the other one)",
    "method": "dump (default; maintenance window), basebackup (physical copy) or online (pcp_recovery_node)",
    "vacuum": "vacuumdb -a -f -z on the source before the dump and on the target after the import",
    "force": "resync even when both are identical; accept a --source that contradicts the evidence",
    "port": f"maintenance port (default inventory maintenance_port or {DEFAULT_MAINT_PORT})",
    "yes": "do not ask for confirmation (needed without a terminal)"})
def resync_task(ctx, source=None, target=None, method="dump", vacuum=False, force=False, port=None,
                yes=False):
    """Rebuild one backend from the one holding the newest data, verified table by table.

    Runbook 5.2.2.2 (f) steps A-D. Prints the plan (every step, every host) first; --dry runs the
    probes and prints the plan only. Every step is journaled: sync.resume continues after an
    interruption, sync.rollback restores the target's old data dir.
    """
    resync(ctx, source, target, method, vacuum, force, yes, maint_port=port)


@task(name="resume", help={"yes": "do not ask for confirmation"})
def resume_task(ctx, yes=False):
    """Continue an interrupted resync from its last completed step (journal checkpoints)."""
    resume(ctx, yes)


@task(name="rollback", help={"yes": "do not ask for confirmation"})
def rollback_task(ctx, yes=False):
    """Undo an unfinished resync: the target's old data dir back, cluster as before it."""
    rollback(ctx, yes)


@task(name="cleanup", help={
    "archive": "directory on each DB host to put resync-HOST-STAMP.tar.gz archives in",
    "delete": "delete the dumps and logs instead of archiving them",
    "remove_datadir": "also remove this kept data dir by name (e.g. data.2026-11-25-171500)",
    "host": "only this DB host", "yes": "do not ask for confirmation"})
def cleanup_task(ctx, archive=None, delete=False, remove_datadir=None, host=None, yes=False):
    """Archive or delete the resync's temporary dumps and logs (runbook 5.2.2.2 (f) step E).

    Kept data directories are never removed unless named with --remove-datadir (never the one
    an unfinished resync would roll back to).
    """
    cleanup(ctx, archive, delete, remove_datadir, host, yes)


@task(name="install-recovery", help={"host": "DB host (default: both)", "yes": "do not ask for confirmation"})
def install_recovery_task(ctx, host=None, yes=False):
    """Install hatasks' online-recovery scripts into PGDATA (pcp_recovery_node runs them)."""
    c = _cluster(ctx)
    hosts = [_host(ctx, host).name] if host else [h.name for h in c.hosts]
    with journal.operation(ctx, c.name, "sync.install-recovery", {"host": host}, yes=yes):
        install_recovery(ctx, hosts, c.name)


@task(name="status", help={"format": "table or json"})
def status_task(ctx, format=None):
    """Show the latest resync: steps done, outcome, kept data dirs on each host."""
    fmt = output.resolve_format(ctx, format)
    c, s = state(ctx)
    data = {"cluster": c.name, "resync": None, "kept": kept_dirs(ctx, c.name)}
    if s:
        data["resync"] = {k: s[k] for k in ("op", "chain", "done", "finished", "outcome", "message",
                                            "rolled_back")}
        if s["params"]:
            data["resync"].update({k: s["params"].get(k) for k in ("method", "source", "target")})
        data["resync"]["kept"] = s["data"].get("kept")

    def table(d):
        r = d["resync"] or {}
        rows = [[k, v] for k, v in r.items()] or [["resync", "none in the journal"]]
        kept = [[h, k["name"], _gb(k["bytes"])] for h, ks in d["kept"].items() for k in ks]
        return [("latest resync", (["item", "value"], rows)), ("kept data dirs", (["host", "dir", "size"], kept))]

    output.emit(data, fmt, table=table)


@task(name="verify", help={"format": "table or json"})
def verify_task(ctx, format=None):
    """Compare every table of every database on both backends: row counts and content checksums."""
    fmt = output.resolve_format(ctx, format)
    c = _cluster(ctx)
    cmp = compare_digests(ctx, {h.name: _port(h) for h in c.hosts})
    hosts = cmp["hosts"]
    output.emit(cmp, fmt, table=lambda d: (["database", "table", *hosts, "equal"], [
        [r["database"], r.get("table") or "", *[(r.get("counts") or {}).get(h) for h in hosts], r["equal"]]
        for r in d["tables"]]))
    if not cmp["equal"]:
        raise StateError(_first_diff(cmp))
