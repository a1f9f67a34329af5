"""Pure planning of a data resync: which backend is the source, the steps of each method and
what each does, the resume state read back from journal records, the exact shell commands, the
disk-fit check and the digest comparison. Nothing here touches a host, the journal or the terminal.
"""

import re

from hatasks.shell import q
from hatasks.errors import HaError, UsageError

ACTION = "sync.resync"
METHODS = ("dump", "basebackup", "online")
DEFAULT_MAINT_PORT = 1234
DEFAULT_WORKDIR = "/var/lib/postgresql/hatasks-resync"
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

#: the steps of each method, in order (their names are the journal's checkpoint names)
METHOD_STEPS = {
    "dump": ["record_newest", "stop_pgpool", "source_maint", "vacuum_source", "dump_source",
             "stop_target", "keep_datadir", "initdb_target", "copy_config", "start_target_maint",
             "import", "vacuum_target", "verify", "restart_normal", "start_pgpool", "attach",
             "verify_pool"],
    "basebackup": ["record_newest", "stop_pgpool", "source_maint", "vacuum_source", "stop_target",
                   "keep_datadir", "basebackup", "copy_config", "start_target_maint", "verify",
                   "restart_normal", "start_pgpool", "attach", "verify_pool"],
    "online": ["record_newest", "install_recovery", "recover_online", "verify", "verify_pool"],
}
#: steps redone together when a resume finds the first ones done but not the last (online: a
#: copy whose verify failed or never ended is copied again; pgpool attached it, the verify
#: step detaches it when it differs)
REBUILD = {"dump": ["initdb_target", "copy_config", "start_target_maint", "import"],
           "basebackup": ["basebackup", "copy_config", "start_target_maint"],
           "online": ["recover_online", "verify"]}


#: steps run at the same time as the one named, on the other host: the source's move to the
#: maintenance port and the target's stop touch different hosts, and pgpool is already stopped
#: (no client reaches either). The target's data dir is moved aside only after the source
#: serves on the maintenance port (a source that does not come back leaves the target's data
#: in place), and the dump method's target is not touched before the source's dump is complete.
ALONGSIDE = {"basebackup": {"source_maint": ["stop_target"]}}


def alongside(method, step, rest):
    """Pure: the steps to run beside STEP (the next ones in REST, all of them), or []."""
    beside = ALONGSIDE.get(method, {}).get(step, [])
    return list(beside) if beside and rest[:len(beside)] == beside else []


#: the step that moves the target's own data aside: before it is done, the target's data is its own
TARGET_REPLACED = {"dump": "keep_datadir", "basebackup": "keep_datadir", "online": "recover_online"}


def target_alone(status, source, target, unlisted_source=True):
    """Pure: pgpool writes to TARGET alone: it is up in SHOW pool_nodes (STATUS: {host: status})
    and SOURCE is not. UNLISTED_SOURCE says what a source pgpool does not list counts as: not
    up (before a resync: the target takes every write) or unknown (a resync under way whose
    pgpool was restarted with the target only: not evidence of writes)."""
    if status.get(source) is None and not unlisted_source:
        return False
    return status.get(target) == "up" and status.get(source) != "up"


def overtaken(method, done, source, target, status, moved=None):
    """Pure: why resuming this resync would throw writes away, or None. STATUS: {host: its
    status in SHOW pool_nodes} read now. pgpool serving from the target while the source is
    down, before the target's data was moved aside, means clients have written to the target
    alone since the resync began (its source went down, Pacemaker moved pgpool): rebuilding
    the target from the source would drop those writes from the cluster. MOVED (online only:
    the recovery's 1st stage moves the target's own data aside before its step is done): where
    the recovery scripts listed the target's own data since the plan, False when they listed
    nothing, None when not read; the words say which data the target serves."""
    if TARGET_REPLACED.get(method) in (done or []):
        return None
    if not target_alone(status, source, target, unlisted_source=False):
        return None
    if method != "online" or moved is False:
        what = f"{target}'s data is still its own"
    elif moved:
        what = (f"{target} serves the online recovery's copy, not its own data (moved aside "
                f"to {moved} by the recovery's 1st stage)")
    else:
        what = (f"{target} serves either its own data or the online recovery's promoted copy "
                f"(not read)")
    return (f"pgpool serves from {target} alone ({source} is {status.get(source)} in SHOW "
            f"pool_nodes) and {what}: clients have written to {target} since the resync "
            f"{source} -> {target} began; resuming it would rebuild {target} from {source} "
            f"and drop those writes")


def steps_for(method, vacuum=False):
    return [s for s in METHOD_STEPS[method] if vacuum or s not in ("vacuum_source", "vacuum_target")]


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
                        "checked complete and error-free; " + (
                            f"no safety dump of {t} (proven to hold no write {s} lacks; its data dir is kept)"
                            if (p.get("proof") or {}).get("clean") is True else
                            f"meanwhile safety pg_dumpall of {t}'s current data into {work}/{p['stamp']}/ on {t}")),
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
    if p["method"] == "basebackup" and step == "verify":
        return (f"{s}+{t}", f"the physical copy: pg_verifybackup passed, same system and databases, "
                            f"nothing written on {s} since the copy ended (its WAL); else every table: "
                            "exact row count and content checksum equal")
    if step == "verify_pool" and p.get("left_detached"):
        return ("-", f"SHOW pool_nodes: {t} up, {p['left_detached']} left detached "
                     "(degenerated, not in sync; the next db.recover rebuilds it)")
    if p["method"] == "online" and step == "verify":
        return (f"{s}+{t}", "every table: exact row count and content checksum equal (retried while writes land)")
    return table[step]


def make_plan(p):
    """The ordered plan: [{"n", "step", "host", "what"}] for params ``p`` (pure)."""
    return [dict(zip(("n", "step", "host", "what"), (i + 1, step, *describe(step, p))))
            for i, step in enumerate(steps_for(p["method"], p.get("vacuum")))]


def plan_lines(p, plan, done=()):
    """The printed plan: a header, the evidence, one line per step (done ones marked)."""
    lines = [f"resync plan: {p['method']} from {p['source']} (source) to {p['target']} (target), "
             f"cluster {p['cluster']}, maintenance port {p['maint_port']}, work dir {p['workdir']}"]
    lines += [f"  evidence: {ev}" for ev in p.get("evidence", [])]
    for item in plan:
        mark = "done " if item["step"] in done else ""
        lines.append(f"  {item['n']:2}. {mark}[{item['host']}] {item['what']}")
    return lines


def summary(p, st, t_total):
    """What a finished resync reports (journal note and return value)."""
    return {"method": p["method"], "source": p["source"], "target": p["target"],
            "kept_datadir": st.get("kept"), "dump": st.get("dump"), "safety_dump": st.get("safety_dump"),
            "verified_tables": st.get("verified_tables"), "seconds": round(t_total, 1),
            **({"left_detached": st["left_detached"], "left_why": st.get("left_why")}
               if st.get("left_detached") else {})}


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


def check_method(method):
    """METHOD when it is one of METHODS, else UsageError."""
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    return method


def run_dir(p):
    """This run's own directory under the work dir (dumps and logs of one resync)."""
    return f"{p['workdir']}/{p['stamp']}"


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
    inner = (f"set -o pipefail; ssh {SSH_OPTS} postgres@{q(src_addr)} {q('cat -- ' + q(dump_path))} "
             f"| awk -v su={q(role)} {q(awk)} "
             f"| {q(pgbin + '/psql')} -X -q -v ON_ERROR_STOP=1 -p {int(port)} -d postgres -f - "
             f">{q(log_path)} 2>&1")
    return f"bash -c {q(inner)}"


def guarded(cmd):
    """CMD run so that it dies with our ssh session: in its own process group, killed (TERM to the
    group) as soon as a watchdog can no longer write to the session (a newline every 2 s on
    stdout: hatasks was interrupted or lost the connection). Without it a long pg_dumpall, import or
    pg_basebackup would go on alone and race with the resume."""
    watch = "while printf '\\n'; do sleep 2; done 2>/dev/null; kill -TERM -- \"-$1\""
    inner = (f"setsid bash -c {q(cmd)} </dev/null & p=$!; "
             f"setsid bash -c {q(watch)} watchdog \"$p\" </dev/null 2>/dev/null & w=$!; "
             "wait $p; rc=$?; kill -TERM -- -$w 2>/dev/null; exit $rc")
    return f"bash -c {q(inner)}"


def read_position_command(path):
    """Shell: how far the processes that have PATH open have read it (the largest fd position,
    from /proc/PID/fdinfo), or nothing when none has it open. One find, no per-fd fork."""
    return (f"find /proc/[0-9]*/fd -maxdepth 1 -lname {q(path)} 2>/dev/null | while read -r f; do "
            "sed -n 's/^pos:[[:space:]]*//p' \"${f%/fd/*}/fdinfo/${f##*/}\" 2>/dev/null; done "
            "| sort -n | tail -n 1")


BASEBACKUP_STREAMED = "SELECT backup_streamed FROM pg_stat_progress_basebackup ORDER BY pid LIMIT 1"


def dump_command(pgbin, port, flags, dest, tmp_sql, tmp_log):
    return (f"umask 077 && cd {q(dest)} && {q(pgbin + '/pg_dumpall')} -p {int(port)} "
            f"{' '.join(flags)} -f {q(tmp_sql)} 2> {q(tmp_log)}")


def initdb_command(pgbin, pgdata, settings):
    parts = [q(pgbin + "/initdb"), "-D", q(pgdata), "-U", q(settings["superuser"]),
             "-E", q(settings["encoding"]), f"--lc-collate={q(settings['collate'])}",
             f"--lc-ctype={q(settings['ctype'])}"]
    if settings.get("provider") == "i":
        parts += ["--locale-provider=icu", f"--icu-locale={q(settings['icu_locale'])}"]
    if settings.get("checksums"):
        parts.append("--data-checksums")
    if settings.get("wal_segsize_mb"):
        parts.append(f"--wal-segsize={int(settings['wal_segsize_mb'])}")
    return " ".join(parts)


def copy_config_command(old, new):
    """Copy the top-level files of OLD that are not the server's own into NEW (as postgres)."""
    skip = "|".join(PG_OWNED)
    return (f"for f in {q(old)}/* {q(old)}/.[!.]*; do [ -f \"$f\" ] || continue; "
            f"case ${{f##*/}} in {skip}) continue ;; esac; cp -p -- \"$f\" {q(new)}/ || exit 1; "
            f"echo \"${{f##*/}}\"; done")


def basebackup_command(pgbin, src_addr, port, superuser, pgdata):
    return (f"{q(pgbin + '/pg_basebackup')} -h {q(src_addr)} -p {int(port)} -U {q(superuser)} "
            f"-D {q(pgdata)} -X stream -c fast && rm -f {q(pgdata + '/standby.signal')} "
            f"{q(pgdata + '/recovery.signal')}")


def verifybackup_command(pgbin, pgdata, ignore=None):
    """pg_verifybackup of a fresh pg_basebackup copy: every file's size and CRC-32C as the
    source's backup_manifest lists them, and the WAL the copy needs present and parseable
    (IGNORE: a file of ours added since, e.g. the marker)."""
    skip = f" -i {q(ignore)}" if ignore else ""
    return f"{q(pgbin + '/pg_verifybackup')} -q{skip} {q(pgdata)}"


def manifest_end_lsn_command(pgdata):
    """The End-LSN of the last WAL range in PGDATA's backup_manifest: where the copy ends."""
    return ("sed -n 's/.*\"End-LSN\": *\"\\([0-9A-Fa-f]*\\/[0-9A-Fa-f]*\\)\".*/\\1/p' "
            f"{q(pgdata + '/backup_manifest')} | tail -n 1")


def digest_query(schema, table):
    """Exact row count and an order-independent content checksum of one table (psycopg2.sql)."""
    from psycopg2 import sql  # on first use: psycopg2 costs start-up time to every command

    return sql.SQL(
        "SELECT count(*), coalesce(sum(hashtextextended(hatasks_row::text, 0)), 0)::text "
        "FROM {}.{} AS hatasks_row"
    ).format(sql.Identifier(schema), sql.Identifier(table))



#: settings of the freshly built target while it is loaded on the maintenance port (a crash
#: during the load means redoing the rebuild anyway); restart_normal drops them
BULK_LOAD = ("-c maintenance_work_mem=256MB -c max_wal_size=4GB -c checkpoint_timeout=1h "
             "-c synchronous_commit=off -c full_page_writes=off -c autovacuum=off")


def bulk_start_command(bindir, pgdata, port, log, timeout=60):
    """pg_ctl start on PORT with the bulk-load settings, server output into LOG."""
    return (f"{q(bindir + '/pg_ctl')} -D {q(pgdata)} -o {q(f'-p {int(port)} ' + BULK_LOAD)} "
            f"-l {q(log)} -w -t {int(timeout)} start")


# =========================================================================== disk, differences (pure)


def gb(n):
    """N bytes for a reader (GB from 0.1 GB up, else MB)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def first_diff(cmp):
    """One line naming how many tables differ and the first difference with its numbers."""
    d = cmp["differences"][0]
    what = f"{d['database']}.{d['table']}" if d.get("table") else d["database"]
    detail = d.get("note") or ", ".join(f"{h}={d['counts'][h]} rows/{d['checksums'][h]}" for h in d["counts"])
    return f"{len(cmp['differences'])} table(s) differ, first {what}: {detail}"


#: the WAL a pg_basebackup -X stream copies besides the data files when no client writes (the
#: source is on the maintenance port): the segments from its start checkpoint to its end
COPY_WAL_BYTES = 64 * 1024 * 1024


def disk_needs(method, src_db_bytes, src_data_bytes, tgt_db_bytes, safety=True, src_copy_bytes=None):
    """Bytes needed per (host role, path kind) (pure): dump file on the source's work dir,
    safety dump on the target's work dir, the new data dir next to the target's PGDATA. The
    basebackup copies the data dir without its pg_wal (SRC_COPY_BYTES, when measured) and only
    the WAL of the copy itself; online counts the whole data dir (clients write meanwhile)."""
    need = {}
    if method == "dump":
        need[("source", "workdir")] = src_db_bytes
        if safety:
            need[("target", "workdir")] = tgt_db_bytes
        need[("target", "pgdata")] = src_db_bytes
    elif method == "basebackup" and src_copy_bytes is not None:
        need[("target", "pgdata")] = min(src_data_bytes, src_copy_bytes + COPY_WAL_BYTES)
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
        e["what"].append(f"{key[1]} {gb(n)}")
    problems = []
    for (host, mount), e in per_fs.items():
        if e["need"] > e["free"]:
            problems.append(f"{host}:{mount} needs {gb(e['need'])} ({' + '.join(e['what'])}) "
                            f"but has {gb(e['free'])} free")
    return problems
