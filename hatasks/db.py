"""DB cluster scenarios: manual failover/failback, maintenance, failure diagnosis and recovery.

Runbook 5.2: manual failover (5.2.1, table 5-3), failback (5.2.2.2 G), failure diagnosis and
recovery by cause (5.2.2, table 5-4). Each scenario chains the one-command tasks (hb, pgpool,
pg, sync) in the runbook's order: read state -> plan -> confirm -> act -> read state again,
and exits non-zero when the cluster did not converge. The DB cluster never fails back by
itself: `db.failback` moves the group back on purpose.

The decision logic is pure (rules.diagnose_db): collected facts (crm_mon from every node that
answers, pgpool, PostgreSQL, ssh and power reachability, the journal's records) -> the
runbook's failure pattern, the evidence and the recovery plan, run by the scenario engine.
"""

import contextlib
import sys
import time

from hatasks import (backends, checks, crm, crmmon, engine, hb, journal, newest, notify, output, pg,
                     pgpool, remote, rules)
from hatasks.base import helps, task
from hatasks.errors import HaError, StateError, UnreachableError, UsageError

METHODS = ("dump", "basebackup", "online")


def check_method(method):
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    return method


# =========================================================================== facts (I/O)


def _probe_db_host(ctx, c, name):
    host = remote.inventory(ctx).host(name)
    out = {"ssh": False, "ssh_error": None, "power": None, "crm": None, "crm_error": None,
           "pg": None}
    try:
        out["crm"], out["crm_error"] = engine.probe_crm(ctx, host, c.vars.get("group"))
        out["ssh"] = True
        if c.kind == "db":
            st = pg.server_state(ctx, host)
            port = st.get("port") or int(host.vars.get("pg_port") or 5432)
            info = None
            if st["running"]:
                try:
                    info = pg.backend_info(ctx, host, port)
                except HaError:
                    info = None
            out["pg"] = {"running": st["running"], "port": st.get("port"),
                         "connect": info is not None,
                         "bytes": sum(d["size"] for d in info["databases"]) if info else None,
                         "pg_port": int(host.vars.get("pg_port") or 5432),
                         # pg_ctl status exits 4 when it cannot access the data directory
                         "datadir": st.get("pg_ctl_rc") != "4"}
            if out["crm"] is not None:
                out["constraints"] = crm.read_constraints(ctx, host)
    except UnreachableError as exc:
        out["ssh"] = False
        out["ssh_error"] = exc.message
    if not out["ssh"]:
        out["power"] = engine.power_state(ctx, host)
    return out


def _policy(ctx, c):
    """The group's location preference in the CIB, read on the first host that answers."""
    for h in c.hosts:
        try:
            return engine.read_policy(ctx, c, h)
        except HaError:
            continue
    return {}


def _contents_if_suspect(ctx, c, facts):
    """Row counts of both backends compared, only when pgpool shows them both attached while
    the journal still holds a degenerated record no resync settled (an attach without a
    resync): None otherwise, or when a backend cannot be read."""
    pool = facts.get("pgpool") or {}
    suspect = facts.get("first_degenerated") or facts.get("stale_attached")
    if not (pool.get("reachable") and not pool.get("degenerated") and pool.get("backends")
            and suspect and not facts.get("pending") and not facts.get("resync")):
        return None
    from hatasks import compare  # the diagnosis's modules load when one runs (start-up time)

    try:
        rep = compare.row_count_report(ctx, c.name)
    except HaError:
        return None
    def line(d):
        if isinstance(d, dict) and "counts" in d:
            return (f"{d.get('database')}.{d.get('table')}: "
                    + ", ".join(f"{h} {n}" for h, n in d["counts"].items()))
        return str(d)
    return {"equal": rep["equal"], "differences": [line(d) for d in rep["differences"][:3]]}


def fencing_facts(ctx, c, hosts):
    """When a host does not answer: the fencing history and the devices able to fence it,
    read on the first node whose crm_mon answers ({"events", "devices": {host: [ids]}}), so
    that a fenced node is told from a lost one; None otherwise or when nothing could read it."""
    lost = [n for n, h in hosts.items() if not h.get("ssh")]
    for n in [n for n, h in hosts.items() if h.get("ssh") and h.get("crm")] if lost else []:
        via = remote.inventory(ctx).host(n)
        try:
            return {"events": hb.fence_events(ctx, via),
                    "devices": {x: hb.fence_devices(ctx, via, x) for x in lost}}
        except HaError:
            continue
    return None


def collect_db(ctx, c, failback_to=None, method="dump"):
    """Every fact db.diagnose decides on, read in parallel (read-only, runs under --dry)."""
    from hatasks import states, syncplan, syncrescue

    order = c.host_names
    jobs = {f"host:{n}": (lambda n=n: _probe_db_host(ctx, c, n)) for n in order}
    jobs["pgpool"] = lambda: pgpool.status(ctx, c.name, record=False)
    jobs["policy"] = lambda: _policy(ctx, c)
    results = remote.probe_many(ctx, list(jobs), lambda key: jobs[key]())
    hosts = {}
    for n in order:
        r = results[f"host:{n}"]
        if isinstance(r, HaError):
            r = {"ssh": False, "ssh_error": r.message, "power": None, "crm": None,
                 "crm_error": None, "pg": None}
        hosts[n] = r
    pool = results["pgpool"]
    if isinstance(pool, HaError):
        pool = {"reachable": False, "error": pool.message, "backends": []}
    pool = {k: pool.get(k)
            for k in ("reachable", "error", "backends", "degenerated", "newest", "via")}
    pool["backends"] = [{k: b.get(k) for k in ("node_id", "host", "port", "status", "role")}
                        for b in pool.get("backends") or []]
    facts = {"cluster": c.name, "kind": c.kind, "order": order, "group": c.vars.get("group"),
             "pgpool_resource": c.vars.get("pgpool_resource"), "hosts": hosts, "pgpool": pool,
             "failback_to": failback_to, "method": method}
    records = journal.Journal(ctx).records()
    facts.update(rules.journal_facts(journal.records_with_cluster(ctx, c.name), c.name))
    facts["constraints"] = next((hosts[n].get("constraints") for n in order
                                 if hosts[n].get("constraints") is not None), None)
    for n in order:
        hosts[n].pop("constraints", None)
    facts["fencing"] = fencing_facts(ctx, c, hosts)
    facts["resync"] = states.resync_facts(syncplan.resume_state(records, c.name),
                                          [r for r in records if r.get("cluster") == c.name])
    policy = results["policy"] if not isinstance(results["policy"], HaError) else {}
    # where the last move by hatasks took the group from, else the CIB's preference
    facts["home"] = states.home_from_journal(records, c.name) or policy.get("preferred")
    # the data-safety records: attaches without a resync, salvage files not re-applied, and
    # pgpool's own node ids against the inventory's
    facts["stale_attached"] = journal.stale_attached(ctx, c.name)
    done = [r.get("ts") or "" for r in records if r.get("cluster") == c.name
            and r.get("event") == "done" and r.get("action") in ("sync.resync", "pgpool.recover")]
    facts["salvage_pending"] = [dict(rec, rebuilt=any(t > (rec.get("ts") or "") for t in done))
                                for rec in journal.salvage_pending(ctx, c.name)]
    facts["node_ids"] = (backends.id_disagreements(c, pool) if pool.get("reachable") else [])
    rs = facts["resync"]
    if rs and pool.get("reachable") and not facts["node_ids"]:
        rs["overtaken"] = syncplan.overtaken(rs.get("method"), rs.get("done"), rs.get("source"),
                                             rs.get("target"), backends.statuses(c, pool),
                                             moved=syncrescue.moved_by_recovery(
                                                 ctx, rs.get("method"), rs.get("target"),
                                                 rs.get("pgdata"), rs.get("kept_list_len")))
    facts["contents"] = _contents_if_suspect(ctx, c, facts)
    held = journal.lock_held(ctx, c.name)
    facts["lock"] = None if held is None or held.get("self") else {
        k: held.get(k) for k in ("user", "pid", "host", "action", "since")}
    return facts


def record(ctx, c, facts, result):
    """Write down what the diagnosis learnt (the manual's bold warning), unless --dry:
    the newest-data backend when pgpool is degenerated and agrees with the first record,
    and the failure diagnosis itself (its resync source) for a later db.recover."""
    if remote.is_dry(ctx):
        return
    pool = facts.get("pgpool") or {}
    first = facts.get("first_degenerated") or {}
    if pool.get("reachable") and pool.get("degenerated") and pool.get("newest"):
        if not first or first.get("newest") == pool["newest"]:
            newest.record_newest(ctx, c.name, f"{c.kind}.diagnose saw pgpool degenerated")
    elif (result["pattern"] == "healthy" and first and not facts.get("pending")
          and pool.get("reachable") and pool.get("backends")):
        # degenerated before, in sync now: say so once, so the next trouble starts afresh
        newest.record_newest(ctx, c.name, f"{c.kind}.diagnose saw the backends in sync again")
    if result["pattern"] != "healthy" and result["pattern"] in rules.RESYNC_PATTERNS:
        pend = facts.get("pending")
        if not pend:
            journal.Journal(ctx).write("diagnosis", c.name, f"{c.kind}.diagnose", {},
                                       pattern=result["pattern"], host=result["host"],
                                       source=result.get("source"), evidence=result["evidence"])


def diagnose(ctx, cluster=None, failback_to=None, method="dump", write=True):
    """Collect, decide, record: the diagnosis dict (+ "cluster", "facts")."""
    from hatasks import states

    c = checks.cluster(ctx, cluster or None, "db")
    facts = collect_db(ctx, c, failback_to, method)
    result = states.diagnose_db(facts)
    if write:
        record(ctx, c, facts, result)
    return dict(result, cluster=c.name, facts=facts)


@task(name="diagnose",
      help=helps("DB", {"format": True, "cluster": "the DB cluster, or all (default: the only one)",
            "method": True, "facts": "include the collected facts in the JSON"}))
def diagnose_task(ctx, format=None, cluster=None, method="dump", facts=False):
    """Name the DB failure pattern with its evidence and recovery plan (5.2.2, table 5-4).

    Reads crm_mon on every node that answers (partitions show up as two views), pgpool's
    SHOW pool_nodes, PostgreSQL on each backend, ssh reachability, and the inventory's
    power_check for hosts that do not answer (power vs network) and then the fencing history
    (fenced: who fenced it, when). Patterns: fenced, power, network, heartbeat, pgpool,
    postgres, degenerated, or healthy. Writes down the newest-data
    backend and the failure (for db.recover). Exit 3 when a failure pattern is named.
    """
    fmt = output.resolve_format(ctx, format)
    check_method(method)
    if cluster == checks.ALL_CLUSTERS:
        return checks.each_cluster(ctx, "db", fmt, lambda name: diagnose_task.body(
            ctx, fmt, name, method, facts))
    return engine.show_diagnosis(diagnose(ctx, cluster, method=method), fmt, facts, "db.recover")


# =========================================================================== failover / failback


def _pgpool_answers(ctx, c, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return backends.read_pool_nodes(ctx, c.name)
        except HaError as exc:
            if time.monotonic() > deadline:
                raise HaError(f"pgpool does not answer {timeout:g}s after the move: {exc.message}",
                              HaError.NOT_CONVERGED) from None
        time.sleep(0.2)


def _record_async(ctx, c, reason, pool_read=None):
    """Start recording the newest-data backend in a thread (it must be done before pgpool
    moves; it runs while the state is read). POOL_READ: a read_pool_async already started,
    whose answer the record uses (one SHOW pool_nodes instead of two; read again when it
    failed). Returns a callable giving its result."""
    if c.kind != "db" or remote.is_dry(ctx):
        return lambda: None

    def record():
        data = None
        if pool_read is not None:
            try:
                data = pool_read()
            except HaError:
                data = None
        return newest.record_newest(ctx, c.name, reason, data=data)

    return engine.in_background(record)


def carry_pool_view(ctx, c, dst, data):
    """Write pgpool's current backend view (SHOW pool_nodes, in node-id order) into DST's
    pgpool_status file before pgpool starts there, so that it does not come up with the stale
    status of its last run (pgpool keeps one per node). Only when that pgpool is not running."""
    if not data or not data.get("backends"):
        return
    words = [("up" if b.get("status") == "up" else "down")
             for b in sorted(data["backends"], key=lambda b: int(b.get("node_id") or 0))]
    if pgpool.write_status_file(ctx, c, dst, words):
        print(f"{dst}: pgpool_status set to the current view ({', '.join(words)}) before pgpool "
              f"starts there", flush=True)


def move_group(ctx, c, src, dst, timeout, action, yes, recorded=None, record_reason=None,
               pool=None, steps=None):
    """Standby SRC, verify the group runs on DST, bring SRC online, verify it stays (no
    automatic failback in the DB cluster), and pgpool answers with its backends. The
    newest-data backend is recorded first (``recorded``: a callable from _record_async
    already started). Each step is printed with the time since STEPS (engine.Steps) began.
    Returns (state after, SHOW pool_nodes after) ((None, None) under --dry)."""
    group = c.vars.get("group")
    args = {"from": src, "to": dst, "timeout": timeout}
    summary = (f"move {group} from {src} to {dst}: standby {src}, verify on {dst}, "
               f"{src} online again")
    if recorded is None:
        recorded = _record_async(ctx, c, record_reason or f"{action}: pgpool moves")
    steps = steps or engine.Steps(4)
    with journal.operation(ctx, c.name, action, args, yes=yes, summary=summary) as op:
        steps("record the newest-data backend (before pgpool moves)")
        # under the lock, at once: the state the standby starts from is read again, and DST's
        # pgpool_status is written, while the record finishes; all three before pgpool moves
        state = engine.in_background(crm.crm_status, ctx, c.name)
        carried = (engine.in_background(carry_pool_view, ctx, c, dst, pool)
                   if c.kind == "db" else None)
        rec = recorded()
        if rec and rec.get("recorded"):
            op.note(f"newest data before the move: {rec.get('newest')}")
        if carried is not None:
            carried()
        steps(f"standby {src}: {group} moves to {dst}")
        moved_state = hb.standby(ctx, src, timeout=timeout, yes=True, state=state())
        if remote.is_dry(ctx):
            print(f"[dry] would bring {src} online again and verify {group} stays on {dst}")
            return None, None
        # pgpool now runs on DST: its answer is awaited while SRC comes back online
        pool_check = (engine.in_background(_pgpool_answers, ctx, c, timeout)
                      if c.kind == "db" else None)
        steps(f"{src} online again: {group} must stay on {dst}")
        after = hb.online(ctx, src, timeout=timeout, yes=True, state=moved_state)

        def moved(s):
            return (crmmon.group_node(s, group) == dst and crmmon.node_state(s, src) == "online"
                    and crmmon.node_state(s, dst) == "online")

        if not (after and moved(after)):
            after = crm.wait_for(ctx, c.name, moved, timeout,
                                f"{group} started on {dst}, {src} and {dst} online")
        pool_after = None
        if c.kind == "db":
            steps(f"pgpool answers through the VIP on {dst}, with its backends")
            pool_after = pool_check()
            pgpool.print_nodes("pgpool after", pool_after)
            if pool_after.get("degenerated"):
                down = [b.get("host") for b in pool_after["backends"] if b.get("status") != "up"]
                raise HaError(f"{group} moved to {dst} but pgpool there runs DEGENERATED "
                              f"({', '.join(down)} down in SHOW pool_nodes; it may have read a "
                              f"stale backend status): clients write to one backend only; see "
                              f"inv db.diagnose", HaError.NOT_CONVERGED)
    return after, pool_after


def read_pool_async(ctx, c):
    """Start reading SHOW pool_nodes in a thread (while crm_mon is read); a callable gives
    the data or raises its HaError."""
    return engine.in_background(backends.read_pool_nodes, ctx, c.name)


def pool_before(ctx, c, force, what, pending=None):
    """SHOW pool_nodes before a move, printed; refused (exit 3) when pgpool runs degenerated
    unless FORCE (the move would land clients on one backend). None when pgpool does not
    answer (said so). PENDING: a read_pool_async already started."""
    try:
        data = pending() if pending else backends.read_pool_nodes(ctx, c.name)
    except HaError as exc:
        print(f"pgpool before: does not answer ({exc.message})", flush=True)
        return None
    pgpool.print_nodes("pgpool before", data)
    if data.get("degenerated"):
        down = [b.get("host") for b in data["backends"] if b.get("status") != "up"]
        if not force:
            raise StateError(f"refusing to {what} while pgpool runs degenerated ({', '.join(down)} "
                             f"down): resync first (inv db.recover), or --force")
        print(f"WARNING: pgpool runs degenerated ({', '.join(down)} down): the {what} keeps "
              f"clients on one backend (--force)", file=sys.stderr, flush=True)
    return data


def failover(ctx, from_=None, cluster=None, timeout=60, yes=False, force=False):
    c, timeout, group = engine.move_inputs(ctx, "db", cluster, from_, "from", timeout)
    steps = engine.Steps(4)
    engine.warm_connections(ctx, c)
    lock = engine.EarlyLock(ctx, c.name, "db.failover")
    pool_read = read_pool_async(ctx, c)
    recorded = _record_async(ctx, c, "db.failover: pgpool moves", pool_read)
    try:
        return _failover(ctx, c, group, from_, timeout, yes, force, steps, pool_read, recorded)
    finally:
        # a refusal ends the task before the move awaits the record: it is awaited here, so no
        # thread is left writing to the cluster while the process exits
        with contextlib.suppress(Exception):
            recorded()
        lock.release()


def _failover(ctx, c, group, from_, timeout, yes, force, steps, pool_read, recorded):
    before = crm.crm_status(ctx, c.name)
    engine.print_state("before", before)
    src = crmmon.group_node(before, group)
    if src is None:
        recorded()
        raise StateError(f"{group} is not started on one node: nothing to fail over "
                         f"(see inv db.diagnose)")
    if from_ and src != from_:
        raise StateError(f"{group} runs on {src}, not on {from_}: nothing to fail over from "
                         f"{from_}")
    others = [n for n in engine.online_others(before, src)
              if not (crmmon.find_node(before, n) or {}).get("maintenance")]
    if not others:
        states = ", ".join(f"{n['name']} {n['state']}"
                           + (" but in maintenance" if n.get("maintenance") else "")
                           for n in before["nodes"] if n["name"] != src)
        raise StateError(f"refusing to fail over from {src}: no other node is online to take "
                         f"{group} ({states})")
    pool = pool_before(ctx, c, force, "fail over", pool_read)
    after, pool_after = move_group(ctx, c, src, others[0], timeout, "db.failover", yes,
                                   recorded=recorded, pool=pool, steps=steps)
    if after is not None:
        engine.print_before_after(before, after, pool, pool_after, pools=True)
        steps.done(f"{group} now runs on {others[0]}; {src} is online and the group stays on "
                   f"{others[0]} (the DB cluster does not fail back by itself: inv db.failback)")
    return after


def home_node(ctx, c, state):
    """(node, why): where the group belongs: the CIB's location preference, else the node
    the last db.failover / db.maintenance moved it from (journal)."""
    policy = engine.read_policy(ctx, c, state["read_on"])
    if policy.get("preferred"):
        return policy["preferred"], (f"location preference in the CIB, score {policy['score']}; "
                                     f"stickiness {policy['stickiness']}")
    for r in reversed(journal.Journal(ctx).records()):
        if r.get("cluster") == c.name and r.get("event") == "start" and \
                r.get("action") == "db.failover" and (r.get("args") or {}).get("from"):
            return r["args"]["from"], f"db.failover moved it from there at {r.get('ts')}"
    return None, None


def failback(ctx, to=None, cluster=None, timeout=60, force=False, yes=False):
    c, timeout, group = engine.move_inputs(ctx, "db", cluster, to, "to", timeout)
    steps = engine.Steps(4)
    engine.warm_connections(ctx, c)
    pool_read = read_pool_async(ctx, c)
    before = crm.crm_status(ctx, c.name)
    engine.print_state("before", before)
    not_online = [f"{n['name']} is {n['state'].upper()}" for n in before["nodes"]
                  if n["state"] != "online"]
    if not_online:
        raise StateError(f"refusing to fail back: both nodes must be online first "
                         f"({'; '.join(not_online)}); see inv db.diagnose")
    src = crmmon.group_node(before, group)
    if src is None:
        raise StateError(f"{group} is not started on one node: see inv db.diagnose")
    if to is None:
        to, why = home_node(ctx, c, before)
        if to is None:
            raise UsageError(f"cannot tell where {group} belongs (no location preference in the "
                             f"CIB, no db.failover in the journal): give --to")
        print(f"failback target: {to} ({why})")
    if src == to:
        print(f"{group} already runs on {to}: nothing to fail back")
        return before
    pool = pool_before(ctx, c, force, "fail back", pool_read)
    after, pool_after = move_group(ctx, c, src, to, timeout, "db.failback", yes, pool=pool,
                                   steps=steps)
    if after is not None:
        engine.print_before_after(before, after, pool, pool_after, pools=True)
        steps.done(f"{group} runs on {to} again; both nodes online")
    return after


@task(name="failover",
      help=helps("DB", {"from": "node the group must be running on (default: where it runs)",
            "cluster": True, "timeout": True,
            "force": True, "yes": True}, why="while pgpool runs degenerated"))
@notify.mails("db.failover")
def failover_task(ctx, from_=None, cluster=None, timeout=60, force=False, yes=False):
    """Move the DB group to the other node by hand, verified (5.2.1 HB failover).

    crm_standby on the node running the group, verify the group is Started on the other
    node and pgpool answers, then bring the node back online: the group stays where it
    is (no automatic failback in the DB cluster). The newest-data backend is recorded first.
    """
    failover(ctx, from_, cluster, timeout, yes, force)


@task(name="failback",
      help=helps("DB", {"to": "node to move the group back to (default: the node not running it)",
            "cluster": True, "timeout": True,
            "force": True, "yes": True}, why="while pgpool runs degenerated"))
@notify.mails("db.failback")
def failback_task(ctx, to=None, cluster=None, timeout=60, force=False, yes=False):
    """Move the DB group back to its node, verified (5.2.2.2 G, optional after 5.2.1/5.2.2).

    Both nodes must be online first (refused otherwise). Standby the node running the group,
    verify it is Started on --to, bring the node online again, verify both online.
    """
    failback(ctx, to, cluster, timeout, force, yes)


# ======================================================================= maintenance (table 5-3)

FOR_KINDS = ("reboot", "pg-restart")
PG_ACTIONS = ("restart", "stop")


def maintenance(ctx, host, for_, pg_action="restart", cluster=None, timeout=60, yes=False):
    c = checks.cluster(ctx, cluster or None, "db")
    h = checks.host(ctx, host, "host", cluster=c)
    if for_ not in FOR_KINDS:
        raise UsageError(f"--for must be one of {', '.join(FOR_KINDS)}, not {for_!r}")
    if pg_action not in PG_ACTIONS:
        raise UsageError(f"--pg must be restart or stop, not {pg_action!r}")
    timeout = checks.positive("timeout", timeout)
    group = c.vars.get("group")
    node_id = h.pgpool_node_id
    if node_id is None:
        raise UsageError(f"host {h.name}: inventory var pgpool_node_id is not set")
    engine.warm_connections(ctx, c)
    pool_read = read_pool_async(ctx, c)
    before = crm.crm_status(ctx, c.name)
    engine.print_state("before", before)
    pool = pool_read()
    pgpool.print_nodes("pgpool before", pool)
    mine = [b for b in pool["backends"] if str(b.get("node_id")) == str(node_id)]
    others_up = [b for b in pool["backends"]
                 if str(b.get("node_id")) != str(node_id) and b.get("status") == "up"]
    if not others_up:
        raise StateError(f"refusing maintenance of {h.name}: no other backend is up in pgpool "
                         f"(the service would stop); see inv db.diagnose")
    gnode = crmmon.group_node(before, group)
    move = for_ == "reboot" and gnode == h.name
    other_nodes = engine.online_others(before, h.name)
    if move and not other_nodes:
        raise StateError(f"refusing maintenance of {h.name}: {group} runs there and no other node "
                         f"is online to take it")
    steps = []
    if move:
        steps.append(f"fail over {group} from {h.name} to {other_nodes[0]} (db.failover)")
    steps.append(f"record the newest-data backend ({others_up[0]['host']})")
    if mine and mine[0].get("status") == "up":
        steps.append(f"detach {h.name} (pgpool node {node_id}) from pgpool (pgpool.switch)")
    if for_ == "pg-restart":
        steps.append(f"{pg_action} PostgreSQL on {h.name}")
    print("plan:\n" + "\n".join(f"  {i}. {s}" for i, s in enumerate(steps, 1)), flush=True)
    args = {"host": h.name, "for": for_, "pg": pg_action if for_ == "pg-restart" else None}
    plan, steps = steps, engine.Steps(len(steps))
    with journal.operation(ctx, c.name, "db.maintenance", args, yes=yes,
                           summary="; ".join(plan)) as op:
        if move:
            steps(plan[steps.n])
            move_group(ctx, c, h.name, other_nodes[0], timeout, "db.failover", True,
                       record_reason=f"db.maintenance of {h.name}: failover",
                       steps=steps.sub(4))
        steps(plan[steps.n])
        if not remote.is_dry(ctx):
            rec = newest.record_newest(ctx, c.name,
                                       f"db.maintenance of {h.name}: before the switch")
            op.note(f"maintenance of {h.name} for {for_}", host=h.name, group_was_on=gnode,
                    newest=rec.get("newest"))
        else:
            print(f"[dry] would record the newest-data backend of {c.name}")
        if mine and mine[0].get("status") == "up":
            steps(plan[steps.n])
            pgpool.detach(ctx, h, node_id, int(timeout), reason=f"db.maintenance of {h.name}")
        else:
            print(f"{h.name} is already detached from pgpool")
        if for_ == "pg-restart":
            steps(plan[steps.n])
            pg.stop(ctx, h, "fast", int(timeout))
            if pg_action == "restart":
                pg.start(ctx, h, None, int(timeout))
    if remote.is_dry(ctx):
        return None
    pool_read = read_pool_async(ctx, c)
    after = crm.crm_status(ctx, c.name)
    pool_after = pool_read()
    engine.print_before_after(before, after, pool, pool_after, pools=True)
    steps.done(f"maintenance of {h.name} prepared")
    back = " --failback" if gnode == h.name else ""
    if for_ == "reboot":
        print(f"NEXT: reboot or shut down {h.name} now (it runs no cluster resource and pgpool "
              f"no longer uses it). When it is back up (PostgreSQL and the cluster stack start "
              f"at boot), run: inv db.recover --method dump|basebackup|online{back}", flush=True)
    elif pg_action == "restart":
        print(f"NEXT: PostgreSQL on {h.name} was restarted; it is detached from pgpool and its "
              f"data is now behind. Resync and attach it: inv db.recover --method "
              f"dump|basebackup|online", flush=True)
    else:
        print(f"NEXT: PostgreSQL on {h.name} is stopped and detached from pgpool; do the work, "
              f"then: inv db.recover (starts it, resyncs, attaches)", flush=True)
    return after


@task(name="maintenance",
      help=helps("DB", {"host": "DB server to take out", "for": "reboot (or shutdown) | pg-restart",
            "pg": "for pg-restart: restart (default) or stop PostgreSQL",
            "cluster": True, "timeout": True,
            "yes": True}))
@notify.mails("db.maintenance", "--host {host} --for {for_}")
def maintenance_task(ctx, host, for_="reboot", pg="restart", cluster=None, timeout=60, yes=False):
    """Prepare one DB server for a reboot or a PostgreSQL restart the runbook's way (table 5-3).

    Fail over if the group runs there (reboot), record the newest-data backend, detach the
    backend from pgpool (pgpool switch), and for pg-restart restart (or --pg stop) PostgreSQL.
    Then says what to do next; `inv db.recover` brings the server back afterwards.
    """
    maintenance(ctx, host, for_, pg, cluster, timeout, yes)


# =========================================================================== recovery


def _settle_first(run):
    """A resync or a failback waits until no transition runs and pgpool answers."""
    if not remote.is_dry(run.ctx):
        engine.wait_settled(run.ctx, run.cluster, max(run.timeout, 60))


def _start_postgres(run, args):
    h = pg.db_host(run.ctx, args["host"])
    with journal.operation(run.ctx, run.cluster.name, "pg.start", {"host": h.name}, yes=True):
        pg.start(run.ctx, h, None, int(run.timeout))


def _check_pgpool(run, args):
    data = pgpool.check(run.ctx, args["host"])
    if not data["ok"]:
        for e in data["errors"]:
            print(f"  {args['host']} pgpool -n: {e}", file=sys.stderr, flush=True)
        raise engine.NeedsHuman(f"pgpool does not start on {args['host']} ({data['errors'][0]}): "
                                f"fix {data.get('config')} there, then run db.recover again")
    print(f"{args['host']}: pgpool -n starts cleanly: the configuration is fixed")


def _resync(run, args):
    from hatasks import sync

    _settle_first(run)
    source, target, force = args["source"], args["target"], bool(args.get("force"))
    if args.get("salvage") and run.source is None:
        raise engine.NeedsHuman(
            f"split brain: {target} holds writes {source} lacks (proved by the resync; they are "
            f"kept in {args['salvage']}). Choose the winner: inv db.recover --source {source} or "
            f"--source {target}; then re-apply the loser's writes: inv sync.salvage --file "
            f"{args['salvage']} --yes")
    if force:
        # split brain: both backends may hold writes the other lacks. Picking the source
        # is the operator's decision, never ours: the resync keeps the target's data
        # (data.<date> directory and a safety dump), but it leaves the live database.
        if run.source is None:
            raise engine.NeedsHuman(
                f"split brain: pgpool now names {target} as the newest backend but {source} "
                f"was recorded first; writes made through pgpool since the merge may be only "
                f"on {target}. Check both, then choose the source: inv db.recover --source "
                f"{source} (the recorded one) or --source {target}. The other backend's data "
                f"is kept in its data.<date> directory and a safety dump, never deleted")
        if run.source != source:
            source, target = run.source, source
        print(f"WARNING: resync from {source} onto {target} chosen by the operator "
              f"(split brain, see the evidence)", file=sys.stderr, flush=True)
    elif run.source is not None:
        # the operator named the winner after sync.resync's proof refused (split brain): the
        # evidence may name the other one (force); the loser's writes go to a salvage file
        if run.source == target:
            source, target = target, source
        force = True
    sync.resync(run.ctx, source=source, target=target, method=args.get("method", "dump"),
                force=force, yes=True, chosen=run.source is not None)


def _failback(run, args):
    _settle_first(run)
    failback(run.ctx, args["to"], run.cluster.name, run.timeout, yes=True)


def _wait_started(run, args):
    group = run.cluster.vars.get("group")
    crm.wait_for(run.ctx, run.cluster.name, lambda s: crmmon.group_node(s, group) is not None,
                run.timeout, f"{group} started")
    _pgpool_answers(run.ctx, run.cluster, run.timeout)


def _start_pgpool(run, args):
    h = pgpool.db_host(run.ctx, args["host"])[0]
    with journal.operation(run.ctx, run.cluster.name, "pgpool.start", {"host": h.name}, yes=True):
        pgpool.start(run.ctx, h.name, int(run.timeout))


def _stop_pgpool(run, args):
    h = pgpool.db_host(run.ctx, args["host"])[0]
    with journal.operation(run.ctx, run.cluster.name, "pgpool.stop", {"host": h.name}, yes=True):
        pgpool.stop(run.ctx, h.name, "fast", int(run.timeout))


def _stop_postgres(run, args):
    h = pg.db_host(run.ctx, args["host"])
    with journal.operation(run.ctx, run.cluster.name, "pg.stop", {"host": h.name}, yes=True):
        pg.stop(run.ctx, h, "fast", int(run.timeout))


def _resume(run, args):
    from hatasks import sync

    sync.resume(run.ctx, yes=True, cluster=run.cluster.name)


def _rollback(run, args):
    from hatasks import sync

    sync.rollback(run.ctx, yes=True, cluster=run.cluster.name)


def _clear(run, args):
    hb.clear(run.ctx, args["resource"], run.cluster.name, run.timeout, yes=True)


#: the plan steps of states.diagnose_db and the functions that run them
STEPS = {
    "pgpool.start": _start_pgpool,
    "pgpool.stop": _stop_pgpool,
    "pg.stop": _stop_postgres,
    "sync.resume": _resume,
    "sync.rollback": _rollback,
    "hb.clear": _clear,
    "hb.start": engine.start_stack,
    "hb.online": engine.online_node,
    "hb.cleanup": engine.cleanup,
    "pg.start": _start_postgres,
    "pgpool.check": _check_pgpool,
    "sync.resync": _resync,
    "db.failback": _failback,
    "wait": _wait_started,
}


def recover(ctx, cluster=None, method="dump", failback=False, to=None, timeout=60, yes=False,
            source=None):
    from hatasks import states

    c = checks.cluster(ctx, cluster or None, "db")
    check_method(method)
    timeout = checks.positive("timeout", timeout)
    if to is not None:
        checks.host(ctx, to, "to", cluster=c)
    if source is not None:
        checks.host(ctx, source, "source", cluster=c)
    state = {"failback_to": to}

    def diag():
        d = diagnose(ctx, c.name, failback_to=state["failback_to"], method=method)
        if failback and state["failback_to"] is None and (d["facts"].get("home") or d.get("host")):
            state["failback_to"] = d["facts"].get("home") or d["host"]
            d = states.diagnose_db(dict(d["facts"], failback_to=state["failback_to"]))
            d["cluster"] = c.name
        return d

    run = engine.Run(ctx, c, timeout, source)
    args = {"method": method, "failback": failback, "to": to, "source": source}
    return engine.run_recovery(ctx, c, "db.recover", diag,
                               lambda plan_step: engine.execute(run, plan_step, STEPS), args, yes)


@task(name="recover",
      help=helps("DB", {
            "method": True,
            "failback": "move the group back to the recovered node at the end (optional step G)",
            "to": "with --failback: the node to move the group to (default: the failed node)",
            "cluster": True, "timeout": True,
            "yes": True,
            "source": "after a split brain only: the backend whose data wins (your decision)"}))
@notify.mails("db.recover")
def recover_task(ctx, method="dump", failback=False, to=None, cluster=None, timeout=60, yes=False,
                 source=None):
    """Recover the DB cluster from the diagnosed failure, step by step (5.2.2, table 5-4).

    Runs the plan db.diagnose prints: start the cluster stack and wait for online; show the
    pgpool configuration error and stop until it is fixed, then clean up the failed action;
    start PostgreSQL and verify; resync when the data diverged; fail back with --failback.
    After each step the cluster is diagnosed again. A step that needs a human (power,
    network, a configuration edit) is named and the task exits 3 until it is done.
    """
    recover(ctx, cluster, method, failback, to, timeout, yes, source)
