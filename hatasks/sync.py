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

This module is the driver (preflight, the run loop, resume, rollback, cleanup) and the tasks; the
pure planning (source choice, steps, commands, checks) is in syncplan, the steps and their STEPS
table in syncsteps.
"""

import concurrent.futures
import contextlib
import datetime
import os
import re
import signal
import threading
import time

from hatasks import (backends, checks, crm, journal, newest, output, pg, pgpool, remote,
                     salvage)
from hatasks.base import helps, task
from hatasks.divergence import compare_digests
from hatasks.shell import q
from hatasks.errors import HaError, StateError, UsageError
from hatasks.syncplan import (ACTION, DEFAULT_MAINT_PORT, DEFAULT_WORKDIR, KEPT_RE, SLOT, SSH_OPTS,
                              alongside, check_fit, check_method, choose_source, describe,
                              disk_needs, first_diff, gb, make_plan, overtaken, plan_lines,
                              resume_state, steps_to_run, summary, target_alone)
from hatasks.syncrescue import moved_by_recovery, promoted_copy
from hatasks.syncio import ensure_running, normal_port, pool_host, probe, run, say
from hatasks.syncsteps import STEPS, idle_limit_in_recovery, install_recovery, kept_list, read_pool


# =========================================================================== preflight


def _pg_settings(ctx, h, port):
    """What initdb needs to build a data dir the source's dump fits into."""
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
    cmd = (f"p={q(path)}; while [ ! -e \"$p\" ]; do p=$(dirname \"$p\"); done; "
           f"df -P -B1 \"$p\" | tail -n 1")
    res = probe(ctx, h, cmd, user="root")
    parts = res.stdout.split()
    if res.exited != 0 or len(parts) < 6:
        raise StateError(f"{h.name}: cannot read free disk space for {path}: {res.stderr.strip()}")
    return parts[5], int(parts[3])


def _du(ctx, h, path):
    """(bytes under PATH on H without its pg_wal, bytes in its pg_wal), 0 when unreadable: one
    walk of the tree, one round trip."""
    res = probe(ctx, h, f"du -sB1 --exclude=pg_wal {q(path)} 2>/dev/null | cut -f1; "
                        f"du -sB1 {q(path + '/pg_wal/')} 2>/dev/null | cut -f1", user="root")
    out = (res.stdout.split() + ["", ""])[:2]
    return tuple(int(v) if v.isdigit() else 0 for v in out)


def check_idle_limit(ctx, p):
    """The online method's 2nd stage is only safe with no client left: pgpool waits for clients
    to leave, and after recovery_timeout it goes on with them still connected (4.3: "malformed
    conn_counter ... reset it to 0"); their writes then reach the source alone while the
    target is promoted and attached. Only client_idle_limit_in_recovery = -1 disconnects every
    client when the 2nd stage starts: refused otherwise."""
    limit = idle_limit_in_recovery(ctx, backends.pgpool_cluster(ctx, p["cluster"]))
    if limit is not None and limit != -1:
        raise HaError(f"preflight: pgpool.conf has client_idle_limit_in_recovery = {limit}: a client "
                      f"busy for the whole recovery_timeout stays connected through the online "
                      f"recovery's 2nd stage and its writes miss {p['target']}; set it to -1 "
                      f"(clients are disconnected when the 2nd stage starts, then reconnect) or "
                      f"use --method dump or basebackup", HaError.REFUSED)


def preflight(ctx, p):
    """Connectivity, source readable, target->source postgres ssh, free disk. Returns numbers;
    raises REFUSED with the numbers when something does not fit."""
    s, t = pg.db_host(ctx, p["source"]), pg.db_host(ctx, p["target"])
    reach = remote.probe_many(ctx, [s, t], lambda n: probe(ctx, n, "true", user="root"))
    bad = [r.message for r in reach.values() if isinstance(r, HaError)]
    if bad:
        raise HaError("preflight: " + "; ".join(bad), HaError.UNREACHABLE)
    src_port = p.get("source_port") or normal_port(s)
    try:
        rows = remote.sql_rows(ctx, s, "SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint AS b "
                               "FROM pg_database WHERE datallowconn", port=src_port)
    except HaError as exc:
        raise HaError(f"preflight: source {s.name} is not readable: {exc.message}", HaError.REFUSED) from None
    src_db = int(rows[0]["b"])
    tgt_db = 0
    if pg.connectable(ctx, t, normal_port(t)):
        rows = remote.sql_rows(ctx, t, "SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint AS b "
                               "FROM pg_database WHERE datallowconn", port=normal_port(t))
        tgt_db = int(rows[0]["b"])
    # what a physical copy reads: the data dir without its WAL (pg_basebackup streams only the
    # WAL the copy needs); the total of the progress lines
    copy, wal = _du(ctx, s, p["pgdata"])
    src_data = copy + wal
    src_copy = copy if p["method"] != "dump" else None
    needs = disk_needs(p["method"], src_db, src_data, tgt_db,
                       safety=(p.get("proof") or {}).get("clean") is not True,
                       src_copy_bytes=src_copy)
    parent = p["pgdata"].rstrip("/").rsplit("/", 1)[0] or "/"
    where = {}
    for (role, kind) in needs:
        h = s if role == "source" else t
        path = p["workdir"] if kind == "workdir" else parent
        mount, free = _df(ctx, h, path)
        where[(role, kind)] = (h.name, mount, free)
    problems = check_fit(needs, where)
    info = {"source_db_bytes": src_db, "source_data_bytes": src_data, "target_db_bytes": tgt_db,
            "source_copy_bytes": src_copy,
            "needs": {f"{k[0]}:{k[1]}": v for k, v in needs.items()},
            "free": {f"{k[0]}:{k[1]}": f"{v[0]}:{v[1]} {gb(v[2])}" for k, v in where.items()}}
    say(f"preflight: source {s.name} holds {gb(src_db)} in its databases ({gb(src_data)} data dir); "
        + "; ".join(f"{k} needs {gb(v)}, free {info['free'][k]}" for k, v in info["needs"].items()))
    if problems:
        raise HaError("preflight: not enough disk: " + "; ".join(problems), HaError.REFUSED)
    if p["method"] == "online":
        check_idle_limit(ctx, p)
    # the hops the method needs between the hosts, as postgres
    hops = {"dump": [(t, s)], "online": [(s, t)], "basebackup": []}[p["method"]]
    for frm, to in hops:
        res = probe(ctx, frm, f"ssh {SSH_OPTS} postgres@{q(to.address)} true")
        if res.exited != 0:
            raise HaError(f"preflight: postgres on {frm.name} cannot ssh to postgres@{to.name} "
                          f"({to.address}): {(res.stderr or res.stdout).strip()[-200:]}", HaError.REFUSED)
    return info


# =========================================================================== driver


def print_plan(p, plan, done=()):
    say(*plan_lines(p, plan, done))


def _params(ctx, c, method, choice, maint_port, vacuum, workdir, force):
    s = pg.db_host(ctx, choice["source"])
    pgdata = s.vars["pgdata"].rstrip("/")
    t = pg.db_host(ctx, choice["target"])
    if t.vars["pgdata"].rstrip("/") != pgdata:
        pgdata_t = t.vars["pgdata"].rstrip("/")
    else:
        pgdata_t = pgdata
    now = datetime.datetime.now()
    return {"cluster": c.name, "method": method, "source": s.name, "target": t.name,
            "maint_port": int(maint_port), "vacuum": bool(vacuum), "force": bool(force),
            "workdir": workdir, "pgdata": pgdata_t, "stamp": now.strftime("%Y%m%d-%H%M%S"),
            "kept": f"{pgdata_t}.{now:%Y-%m-%d-%H%M%S}", "pgpool_host": pool_host(ctx, c),
            "evidence": choice["evidence"]}


def _both_up(ctx, s, t):
    return pg.connectable(ctx, s, normal_port(s)) and pg.connectable(ctx, t, normal_port(t))


def prepare(ctx, source=None, target=None, method="dump", vacuum=False, force=False, maint_port=None,
            workdir=None, cluster=None, chosen=False):
    """Validate, choose source/target from the evidence, build the plan params (probes only).
    Returns (params, plan) or (None, reason) when there is nothing to do.

    Before any plan: proof from both backends that the target holds no write the source lacks
    (salvage.prove_clean); refused (exit 3, salvage file kept) unless CHOSEN (the operator
    named the source) or FORCE."""
    check_method(method)
    c = backends.pgpool_cluster(ctx, cluster)
    hosts = [h.name for h in c.hosts]
    for opt, v in (("source", source), ("target", target)):
        if v is not None:
            remote.check_value(opt, v)
            pg.db_host(ctx, v)
    maint_port = checks.port(maint_port if maint_port is not None else
                               c.vars.get("maintenance_port") or DEFAULT_MAINT_PORT, "port")
    workdir = pg.check_dest(workdir or c.vars.get("resync_dir") or DEFAULT_WORKDIR)
    journal.check_unlocked(ctx, c.name)
    pool_now = read_pool(ctx, c)
    choice = choose_source(hosts, pool_now, journal.newest(ctx, c.name), source, target, force)
    s, t = pg.db_host(ctx, choice["source"]), pg.db_host(ctx, choice["target"])
    if not pg.connectable(ctx, s, normal_port(s)):
        st = pg.server_state(ctx, s)
        raise HaError(f"refusing to resync: the source {s.name} is down (PostgreSQL "
                      f"{'runs on port ' + str(st['port']) if st['running'] else 'not running'}; "
                      f"evidence: {'; '.join(choice['evidence'])})", HaError.REFUSED)
    fresh = False
    if pool_now and pool_now.get("degenerated") and not remote.is_dry(ctx):
        rec = newest.record_newest(ctx, c.name, "sync.resync: pgpool seen degenerated")
        fresh = rec.get("recorded") and rec.get("newest")
    degenerated = bool(pool_now and pool_now.get("degenerated"))
    if not degenerated and _both_up(ctx, s, t):
        cmp = compare_digests(ctx, {s.name: normal_port(s), t.name: normal_port(t)})
        target_up = pool_now is None or all(b.get("status") == "up" for b in pool_now.get("backends", []))
        if cmp["equal"] and target_up and not force:
            if not remote.is_dry(ctx):
                # the proof a resync would give: a failure diagnosis waiting for one is settled
                journal.Journal(ctx).write("equal", c.name, "equal", {}, backends=[s.name, t.name],
                                           proof=f"sync.resync: {len(cmp['tables'])} tables, row "
                                                 f"counts and checksums equal, both attached")
            return None, (f"nothing to do: {s.name} and {t.name} are both up and identical "
                          f"({len(cmp['tables'])} tables, row counts and checksums); --force to resync anyway")
        if not cmp["equal"] and choice["tentative"] and not force:
            raise HaError(f"refusing to resync: the backends differ ({first_diff(cmp)}) but nothing "
                          f"says which holds the newest data (evidence: {'; '.join(choice['evidence'])}); "
                          f"name it with --source", HaError.REFUSED)
        if cmp["equal"]:
            choice["evidence"].append("contents equal now (row counts + checksums)")
        else:
            choice["evidence"].append(f"contents differ: {first_diff(cmp)}")
    proof = salvage.prove_clean(ctx, c.name, t, s, force, chosen=chosen,
                                what=f"to rebuild {t.name} from {s.name}")
    p = _params(ctx, c, method, choice, maint_port, vacuum, workdir, force)
    p["proof"] = {k: proof.get(k) for k in ("clean", "how", "seconds")}
    p["chosen"] = bool(chosen)
    # the newest-data record just written: the record_newest step need not write it again
    # (popped by resync before the plan is journaled: a resume records afresh)
    p["newest_fresh"] = fresh or None
    status = backends.statuses(c, pool_now) if pool_now else {}
    if target_alone(status, s.name, t.name):
        # pgpool writes to the target alone: writes keep landing there after the proof
        if method == "online":
            raise StateError(f"refusing an online resync onto {t.name}: pgpool writes to "
                             f"{t.name} alone ({s.name} is {status.get(s.name)} in it); "
                             f"use --method dump or basebackup (pgpool is stopped, then "
                             f"{t.name} is proved again)")
        p["reprove"] = True
    if method == "online":
        # the recovery scripts append the kept dir to this list: rollback finds it from here
        p["kept_list_len"] = len(kept_list(ctx, t, p["pgdata"]))
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
        why = ("the copy was not proved equal" if p["method"] == "online"
               else "the rebuild was not finished")
        say(f"resume: redoing {', '.join(redo)} ({why})")
        op.checkpoint("redo", steps=redo)
    plan = {i["step"]: i for i in make_plan(dict(p, kept=st.get("kept") or p.get("kept")))}
    todo = list(todo)
    while todo:
        step = todo.pop(0)
        beside = alongside(p["method"], step, todo)
        if beside:
            del todo[:len(beside)]
            _run_alongside(ctx, op, p, st, plan, step, beside)
        else:
            _run_one(ctx, op, p, st, plan, step)
    return st


def _run_one(ctx, op, p, st, plan, step, note=""):
    item = plan[step]
    what = item["what"]
    if st.get("left_detached"):  # an earlier step left the source out: say so, not the plan's words
        what = describe(step, dict(p, left_detached=st["left_detached"],
                                   kept=st.get("kept") or p.get("kept")))[1]
    say(f"[{item['n']}/{len(plan)}] {step} [{item['host']}]: {what}{note}")
    t0 = time.monotonic()
    op.step(step)
    data = STEPS[step](ctx, dict(p, kept=st.get("kept") or p.get("kept")), st) or {}
    st.update(data)
    data["seconds"] = round(time.monotonic() - t0, 2)
    op.checkpoint(step, **data)


def _run_alongside(ctx, op, p, st, plan, step, beside):
    """STEP in a thread while BESIDE run here one after the other (syncplan.ALONGSIDE). Each is
    checkpointed when it ends (STEP last); a step that failed is not, and its error is raised
    after the other side has ended (the first error when both failed)."""
    item = plan[step]
    say(f"[{item['n']}/{len(plan)}] {step} [{item['host']}]: {item['what']} (alongside "
        f"{', '.join(beside)})")
    t0 = time.monotonic()
    op.step(step)
    ex = concurrent.futures.ThreadPoolExecutor(1)
    fut = ex.submit(STEPS[step], ctx, dict(p, kept=st.get("kept") or p.get("kept")), dict(st))
    err = None
    try:
        for other in beside:
            _run_one(ctx, op, p, st, plan, other, note=f" (alongside {step})")
    except BaseException as exc:  # KeyboardInterrupt too: the thread's step is still waited for
        err = exc
    try:
        data = fut.result() or {}
    except BaseException:
        ex.shutdown()
        if err is not None:
            raise err from None
        raise
    ex.shutdown()
    st.update(data)
    data["seconds"] = round(time.monotonic() - t0, 2)
    op.checkpoint(step, **data)
    if err is not None:
        raise err


def restart_stopped_pgpool(ctx, cluster, yes):
    """Nothing to copy, but pgpool left stopped (pgpool.stop, an interrupted step): hand it
    back to Pacemaker where the group runs, so the cluster serves both backends again."""
    c = backends.pgpool_cluster(ctx, cluster)
    try:
        backends.read_pool_nodes(ctx, c.name)
        return None
    except HaError:
        pass
    rs = pgpool.resource_state(ctx, c)
    if not rs or (rs["managed"] and not rs["maintenance"]):
        return None
    where = pgpool.running_on(ctx, c) or [h.name for h in c.hosts]
    vip = [r.get("node") for r in crm.crm_status(ctx, c.name).get("resources", [])
           if r.get("id") == c.vars.get("vip_resource") and r.get("node")]
    host = (vip or where)[0]
    say(f"pgpool is stopped ({rs['id']} {'in maintenance' if rs['maintenance'] else 'unmanaged'}):"
        f" starting it on {host}")
    with journal.operation(ctx, c.name, "pgpool.start", {"host": host}, yes=yes):
        return pgpool.start(ctx, host)


def resync(ctx, source=None, target=None, method="dump", vacuum=False, force=False, yes=False,
           maint_port=None, workdir=None, cluster=None, chosen=False):
    """The whole resync (plan, confirm, run, verify). Returns a summary dict, or
    {"nothing_to_do": reason}. Under --dry: plan + probes only. CHOSEN: the operator named
    the source (a target holding writes the source lacks is rebuilt, its writes kept in a
    salvage file); otherwise such a target is refused (exit 3)."""
    p, plan = prepare(ctx, source, target, method, vacuum, force, maint_port, workdir, cluster,
                      chosen)
    if p is None:
        say(plan)
        restart_stopped_pgpool(ctx, cluster, yes)
        return {"nothing_to_do": plan}
    print_plan(p, plan)
    info = preflight(ctx, p)
    if remote.is_dry(ctx):
        say("[dry] plan and probes only; nothing was changed")
        return {"dry": True, "plan": plan, "preflight": info}
    s = pg.db_host(ctx, p["source"])
    p["settings"] = _pg_settings(ctx, s, normal_port(s))
    # totals for the progress lines of the long steps
    p["sizes"] = {"db": info["source_db_bytes"], "data": info["source_data_bytes"],
                  "copy": info.get("source_copy_bytes")}
    args = {k: p[k] for k in ("method", "source", "target", "maint_port", "vacuum", "force")}
    fresh = p.pop("newest_fresh", None)
    st0 = {"newest_fresh": fresh} if fresh else {}
    t0 = time.monotonic()
    with journal.operation(ctx, p["cluster"], ACTION, args, yes=yes,
                           summary=f"{method} resync {p['source']} -> {p['target']}") as op:
        p["op"] = op.id
        op.checkpoint("plan", params=p, preflight=info)
        with interruptible():
            st = run_steps(ctx, op, p, [], st0)
        result = summary(p, st, time.monotonic() - t0)
        op.note("resync summary", **result)
    say(f"resync done in {result['seconds']}s: {p['target']} rebuilt from {p['source']} ({method}); "
        f"old data dir kept: {result['kept_datadir']}" + left_words(result))
    return result


def state(ctx, cluster=None):
    c = backends.pgpool_cluster(ctx, cluster)
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
    pool_now = read_pool(ctx, c)
    if pool_now and not backends.id_disagreements(c, pool_now):
        moved = moved_by_recovery(ctx, p["method"], p["target"], p["pgdata"], p.get("kept_list_len"))
        why = overtaken(p["method"], s["done"], p["source"], p["target"],
                        backends.statuses(c, pool_now), moved=moved)
        if why:
            raise StateError(f"refusing to resume resync {s['op']}: {why}. End it with "
                             f"inv sync.rollback (it leaves {p['target']}'s data as it is), "
                             f"then inv db.recover")
    print_plan(p, make_plan(dict(p, kept=s["data"].get("kept") or p.get("kept"))), s["done"])
    say(f"last attempt: {s['outcome'] or 'interrupted'}: {s['message'] or '(no end record)'}")
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
    say(f"resync resumed and done: {p['target']} rebuilt from {p['source']}" + left_words(result))
    return result


def left_words(result):
    """The end line's words for a source the attach step left detached (else nothing)."""
    if not result.get("left_detached"):
        return ""
    return (f"; {result['left_detached']} LEFT DETACHED (pgpool degenerated, not in sync: "
            f"{result['target']} holds the newest data; run db.recover)")


def detached_from_source(c, pool_now, src, t):
    """pgpool answers, serving the source with the target detached (e.g. by a failed verify)."""
    seen = backends.statuses(c, pool_now)
    return bool(pool_now) and seen.get(src.name) == "up" and seen.get(t.name) != "up"


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
    t, src = pg.db_host(ctx, p["target"]), pg.db_host(ctx, p["source"])
    kept = data.get("kept")
    if not kept and p["method"] == "online" and p.get("kept_list_len") is not None:
        # the online recovery failed after its 1st stage moved the data dir: the scripts listed it
        new = kept_list(ctx, t, p["pgdata"])[int(p["kept_list_len"]):]
        kept = new[0] if new else None
    copy = None
    if kept and p["method"] == "online" and promoted_copy(ctx, t, p["pgdata"]) \
            and not detached_from_source(c, read_pool(ctx, c), src, t):
        # the recovery's 2nd stage promoted the copy and pgpool may have served it since,
        # maybe alone (its source lost power): putting the old directory back would take
        # those writes out of the cluster. The copy stays; the old directory stays kept.
        # (A copy pgpool has detached while it serves the source is rolled back as before.)
        copy, kept = kept, None
        say(f"{t.name}: {p['pgdata']} is the recovery's finished (promoted) copy, which may "
            f"hold client writes: it stays in place, the old data directory stays kept as {copy}")
    say(f"rollback of resync {s['op']} ({p['method']} {p['source']} -> {p['target']}); done steps: "
        f"{', '.join(s['done']) or 'none'}")
    if remote.is_dry(ctx):
        say(f"[dry] would restore {kept or '(no kept dir)'} as {p['pgdata']} on {t.name}, restart both "
            "on their normal ports, start pgpool")
        return {"dry": True}
    with journal.operation(ctx, c.name, "sync.rollback", {"of": s["op"]}, yes=yes,
                           summary=f"roll back resync {s['op']}") as op:
        restored = None
        if kept:
            exists = probe(ctx, t, f"test -d {q(kept)}", user="root").exited == 0
            if not exists:
                raise StateError(f"{t.name}: kept data directory {kept} is missing: cannot roll back")
            if pg.server_state(ctx, t)["running"]:
                pg.stop(ctx, t, "fast")
            failed = f"{p['pgdata']}.failed-{datetime.datetime.now():%Y-%m-%d-%H%M%S}"
            moved = run(ctx, t, f"if [ -e {q(p['pgdata'])} ]; then mv -T -- {q(p['pgdata'])} {q(failed)};"
                                f" echo moved; fi; mv -T -- {q(kept)} {q(p['pgdata'])}", user="root")
            failed = failed if "moved" in moved.stdout.split() else None
            restored = kept
            op.checkpoint("restore_datadir", restored=kept, failed_copy=failed)
            say(f"{t.name}: {kept} is {p['pgdata']} again "
                + (f"(the unfinished copy is kept as {failed})" if failed
                   else f"(there was no unfinished copy at {p['pgdata']} to keep)"))
        src_up = True
        for h in (src, t):
            try:
                ensure_running(ctx, h, normal_port(h))
            except HaError as exc:
                # said, not fatal: the target is back as before; the source's own fault (its
                # power, its PostgreSQL) is the next diagnosis's to plan
                say(f"{h.name}: PostgreSQL does not start on its normal port: {exc.message}")
                src_up = src_up and h is not src
        op.checkpoint("restart_normal", source_up=src_up)
        if p["method"] == "online" and src_up:
            rows = remote.sql_rows(ctx, src, "SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = %s",
                                   (SLOT,), port=normal_port(src))
            if rows and int(rows[0]["n"]):
                remote.sql_rows(ctx, src, "SELECT pg_drop_replication_slot(%s)", (SLOT,), port=normal_port(src))
                say(f"{src.name}: dropped the replication slot {SLOT} of the failed recovery")
        if data.get("pgpool_stopped"):
            host = data.get("pgpool_host") or p.get("pgpool_host")
            rid = c.vars.get("pgpool_resource")
            if not rid or pgpool.maintenance_set(ctx, pg.db_host(ctx, host), rid) or not read_pool(ctx, c):
                pgpool.start(ctx, host)
            op.checkpoint("start_pgpool")
        pool_now = read_pool(ctx, c)
        if pool_now:
            say("pgpool: " + ", ".join(f"{b['host']} {b['status']}" for b in pool_now["backends"]))
        op.note("rollback summary", restored=restored, kept_copy=copy)
    return {"restored": restored, "kept_copy": copy}


# ---- cleanup


def cleanup(ctx, archive=None, delete=False, remove_datadir=None, host=None, yes=False, cluster=None):
    """Archive (tar.gz into ARCHIVE) or delete the resync work dirs (dumps, logs) on the DB hosts;
    remove a kept data dir only when named."""
    c = backends.pgpool_cluster(ctx, cluster)
    if archive is None and not delete and not remove_datadir:
        raise UsageError("give --archive DIR or --delete (dumps and logs), and/or --remove-datadir NAME")
    if archive is not None and delete:
        raise UsageError("--archive and --delete exclude each other")
    if archive is not None:
        archive = pg.check_dest(archive, "archive")
    # host "" is a bad value (db_host refuses it), never "every host"
    hosts = [pg.db_host(ctx, host)] if host is not None else [pg.db_host(ctx, h.name) for h in c.hosts]
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
                res = probe(ctx, h, f"ls -1A {q(workdir)} 2>/dev/null || true", user="root")
                runs = [n for n in res.stdout.split() if re.match(r"^\d{8}-\d{6}$", n)]
                if active and s["params"] and s["params"].get("stamp") in runs:
                    runs.remove(s["params"]["stamp"])
                    say(f"{h.name}: keeping {workdir}/{s['params']['stamp']} (resync {s['op']} is unfinished)")
                for r in runs:
                    if archive is not None:
                        tar = f"{archive}/resync-{h.name}-{r}.tar.gz"
                        run(ctx, h, f"umask 077 && mkdir -p -m 700 {q(archive)} && tar -czf {q(tar)} -C {q(workdir)} "
                                     f"{q(r)} && rm -rf -- {q(workdir + '/' + r)}", user="root")
                    else:
                        run(ctx, h, f"rm -rf -- {q(workdir + '/' + r)}", user="root")
                done[h.name] = runs
                say(f"{h.name}: {'archived into ' + archive if archive else 'deleted'}: "
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
                if probe(ctx, h, f"test -d {q(path)}", user="root").exited != 0:
                    say(f"{h.name}: no {path}")
                    continue
                run(ctx, h, f"rm -rf -- {q(path)}", user="root")
                run(ctx, h, f"f={q(pgdata + '.hatasks-kept')}; if [ -f \"$f\" ]; then "
                             f"grep -vxF {q(path)} \"$f\" > \"$f.tmp\"; mv -f \"$f.tmp\" \"$f\"; fi; true",
                    warn=True)
                say(f"{h.name}: removed {path}")
                done.setdefault("removed", []).append(f"{h.name}:{path}")
        op.note("cleanup summary", **{k: v for k, v in done.items()})
    return done


def kept_dirs(ctx, cluster=None):
    """Kept data dirs per DB host (name, size)."""
    c = backends.pgpool_cluster(ctx, cluster)
    out = {}
    for h in c.hosts:
        pgdata = h.vars["pgdata"].rstrip("/")
        d, b = pgdata.rsplit("/", 1)
        res = probe(ctx, h, f"cd {q(d)} && for x in {q(b)}.*; do [ -d \"$x\" ] && du -sB1 \"$x\"; done; true",
                    user="root")
        out[h.name] = [{"name": ln.split("\t")[1], "bytes": int(ln.split("\t")[0])}
                       for ln in res.stdout.splitlines() if "\t" in ln]
    return out

# =========================================================================== tasks


@task(name="resync", help=helps("DB", {
    "source": "backend with the newest data (default: journal record, cross-checked with pgpool)",
    "target": "backend to rebuild (default: the other one)",
    "method": True,
    "vacuum": "vacuumdb -a -f -z on the source before the dump and on the target after the import",
    "force": "resync even when both are identical; accept a --source that contradicts the evidence; "
             "rebuild a target whose contents cannot be read (its data dir is kept)",
    "port": f"maintenance port (default inventory maintenance_port or {DEFAULT_MAINT_PORT})",
    "yes": True}))
def resync_task(ctx, source=None, target=None, method="dump", vacuum=False, force=False, port=None,
                yes=False):
    """Rebuild one backend from the one holding the newest data, verified table by table.

    Runbook 5.2.2.2 (f) steps A-D. Prints the plan (every step, every host) first; --dry runs the
    probes and prints the plan only. Every step is journaled: sync.resume continues after an
    interruption, sync.rollback restores the target's old data dir. First, proven from both
    backends: the target holds no write the source lacks; a target that does is refused (exit
    3) with a salvage file of its writes, unless --source names the winner.
    """
    resync(ctx, source, target, method, vacuum, force, yes, maint_port=port,
           chosen=source is not None)


@task(name="resume", help=helps("DB", {"yes": True}))
def resume_task(ctx, yes=False):
    """Continue an interrupted resync from its last completed step (journal checkpoints)."""
    resume(ctx, yes)


@task(name="rollback", help=helps("DB", {"yes": True}))
def rollback_task(ctx, yes=False):
    """Undo an unfinished resync: the target's old data dir back, cluster as before it."""
    rollback(ctx, yes)


@task(name="cleanup", help=helps("DB", {
    "archive": "directory on each DB host to put resync-HOST-STAMP.tar.gz archives in",
    "delete": "delete the dumps and logs instead of archiving them",
    "remove_datadir": "also remove this kept data dir by name (e.g. data.2026-11-25-171500)",
    "host": "only this DB host", "yes": True}))
def cleanup_task(ctx, archive=None, delete=False, remove_datadir=None, host=None, yes=False):
    """Archive or delete the resync's temporary dumps and logs (runbook 5.2.2.2 (f) step E).

    Kept data directories are never removed unless named with --remove-datadir (never the one
    an unfinished resync would roll back to).
    """
    cleanup(ctx, archive, delete, remove_datadir, host, yes)


@task(name="install-recovery", help=helps("DB", {"host": "DB host (default: both)", "yes": True}))
def install_recovery_task(ctx, host=None, yes=False):
    """Install hatasks' online-recovery scripts into PGDATA (pcp_recovery_node runs them)."""
    c = backends.pgpool_cluster(ctx)
    hosts = [pg.db_host(ctx, host).name] if host is not None else [h.name for h in c.hosts]
    with journal.operation(ctx, c.name, "sync.install-recovery", {"host": host}, yes=yes):
        install_recovery(ctx, hosts, c.name)


@task(name="status", help=helps("DB", {"format": True}))
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
        kept = [[h, k["name"], gb(k["bytes"])] for h, ks in d["kept"].items() for k in ks]
        return [("latest resync", (["item", "value"], rows)), ("kept data dirs", (["host", "dir", "size"], kept))]

    output.emit(data, fmt, table=table)


@task(name="verify", help=helps("DB", {"format": True}))
def verify_task(ctx, format=None):
    """Compare every table of every database on both backends: row counts and content checksums."""
    fmt = output.resolve_format(ctx, format)
    c = backends.pgpool_cluster(ctx)
    cmp = compare_digests(ctx, {h.name: normal_port(h) for h in c.hosts})
    hosts = cmp["hosts"]
    output.emit(cmp, fmt, table=lambda d: (["database", "table", *hosts, "equal"], [
        [r["database"], r.get("table") or "", *[(r.get("counts") or {}).get(h) for h in hosts], r["equal"]]
        for r in d["tables"]]))
    if not cmp["equal"]:
        raise StateError(first_diff(cmp))
    if not remote.is_dry(ctx):
        # proof of equality: a stale-attach (pgpool.attach --force) no longer stands
        journal.Journal(ctx).write("equal", c.name, "equal", {}, backends=hosts,
                                   proof=f"sync.verify: {len(cmp['tables'])} tables, row counts "
                                         f"and checksums equal")


@task(name="salvage",
      help=helps("DB", {"file": "the salvage file a refused rebuild wrote (local path)",
                            "cluster": True, "yes": True}))
def salvage_task(ctx, file, cluster=None, yes=False):
    """Re-apply a salvage file (the loser's writes after a split brain) through pgpool.

    One transaction per database; rows already there are left alone (ON CONFLICT DO NOTHING);
    conflicting keys are only listed in the file. Verified: both backends equal afterwards.
    """
    checks.no_control("file", file)
    if not file:
        raise UsageError("--file: an empty value is not allowed")
    remote.check_value("file", file)  # a path hatasks wrote: no shell metacharacters
    c = backends.pgpool_cluster(ctx, cluster)
    file = os.path.abspath(file)   # as the salvage record names it (journal.salvage_pending)
    with journal.operation(ctx, c.name, "sync.salvage", {"file": file}, yes=yes,
                           summary=f"apply {file} through pgpool"):
        return salvage.apply(ctx, c.name, file)
