"""DB cluster scenarios: manual failover/failback, maintenance, failure diagnosis and recovery.

Runbook 5.2: manual failover (5.2.1, table 5-3), failback (5.2.2.2 G), failure diagnosis and
recovery by cause (5.2.2, table 5-4). Each scenario chains the one-command tasks (hb, pgpool,
pg, sync) in the runbook's order: read state -> plan -> confirm -> act -> read state again,
and exits non-zero when the cluster did not converge. The DB cluster never fails back by
itself: `db.failback` moves the group back on purpose.

The decision logic is pure: `diagnose_db(facts)` turns collected facts (crm_mon from every
node that answers, pgpool, PostgreSQL, ssh and power reachability, the journal's records)
into the runbook's failure pattern, the evidence and the recovery plan.
"""

import re
import shlex
import subprocess
import sys
import threading
import time

from hatasks import cluster as crm
from hatasks import checks, hb, journal, output, pg, pgpool, remote
from hatasks.base import task
from hatasks.errors import HaError, StateError, UnreachableError, UsageError

#: table 5-4 rows (plus "healthy"), in the order a diagnosis names them when several hold
DB_PATTERNS = ("power", "network", "heartbeat", "pgpool", "postgres", "degenerated")
#: patterns whose recovery includes a data resync (table 5-4, column "data resync")
RESYNC_PATTERNS = ("power", "network", "postgres", "degenerated")
METHODS = ("dump", "basebackup", "online")
#: how many plan steps db.recover / lb.recover run at most before giving up
MAX_STEPS = 12
#: seconds a view that may be transient (a node that just started sees its peer OFFLINE until
#: the membership forms) is given to change before recover calls for a human
SETTLE = 30


#: lb.py calls db._dry and db._positive
_dry = remote.is_dry
_positive = checks.positive


def check_method(method):
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    return method


def kind_cluster(ctx, kind, name=None):
    """The inventory cluster of KIND (name it with NAME when there are several)."""
    inv = remote.inventory(ctx)
    if name:
        remote.check_value("cluster", name)
        c = inv.cluster(name)
        if c.kind != kind:
            raise UsageError(f"cluster {c.name} is a {c.kind} cluster, not a {kind} cluster")
        return c
    found = inv.clusters_of_kind(kind)
    if not found:
        raise UsageError(f"no {kind} cluster (cluster_kind={kind}) in {inv.path}")
    if len(found) > 1:
        raise UsageError(f"several {kind} clusters: name one with --cluster "
                         f"({', '.join(c.name for c in found)})")
    return found[0]


def cluster_host(ctx, c, name, option):
    """Validate --OPTION NAME as a host of cluster C (nothing has run yet)."""
    remote.check_value(option, name)
    host = remote.inventory(ctx).host(name)
    if host.cluster != c.name:
        raise UsageError(f"--{option} {name}: not a host of the {c.name} cluster "
                         f"(its hosts: {', '.join(c.host_names)})")
    return host


# =========================================================================== pure logic


def crm_view(state, group):
    """The part of a parsed crm_mon a diagnosis needs (JSON-able, small)."""
    return {
        "nodes": {n["name"]: n["state"] for n in state.get("nodes", [])},
        "group_node": crm.group_node(state, group) if group else None,
        "resources": [{"id": r.get("id"), "node": r.get("node"), "role": r.get("role"),
                       "nodes": r.get("nodes") or ([r["node"]] if r.get("node") else [])}
                      for r in state.get("resources", [])
                      if not group or r.get("group") == group or r.get("id") == group],
        "failed_actions": [{k: f.get(k) for k in ("resource", "node", "operation", "rc", "reason")}
                           for f in state.get("failed_actions", [])],
    }


def _render(step):
    """A plan step as the line the operator would type (manual steps as plain words)."""
    if step["task"] == "manual":
        return f"manual: {step['text']}"
    if step["task"] == "wait":
        return f"wait: {step['text']}"
    parts = [step["label"]] if step.get("label") else []
    parts += ["inv", step["task"]]
    for key, value in step.get("args", {}).items():
        if value is True:
            parts.append(f"--{key}")
        elif value not in (None, False):
            parts += [f"--{key}", shlex.quote(str(value))]
    return " ".join(parts)


def _step(task_name, why, conditional=False, **args):
    step = {"task": task_name, "args": args, "why": why}
    if conditional:
        step["conditional"] = True
    return step


def _manual(text, conditional=False):
    step = {"task": "manual", "args": {}, "text": text, "why": "needs a human"}
    if conditional:
        step["conditional"] = True
    return step


def _views(facts):
    return {n: f["crm"] for n, f in facts["hosts"].items() if f.get("crm")}


def _group_node(facts):
    """Where the group runs according to the views that answer (None: nowhere / they differ)."""
    spots = {v.get("group_node") for v in _views(facts).values()}
    spots.discard(None)
    return spots.pop() if len(spots) == 1 else None


def _all_failed(facts):
    seen, out = set(), []
    for view in _views(facts).values():
        for f in view.get("failed_actions", []):
            key = (f.get("resource"), f.get("node"), f.get("operation"))
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def _unreachable_problems(facts, order):
    """(pattern, host, evidence) for hosts the operator cannot reach or whose stack is down."""
    found = []
    views = _views(facts)
    for name in order:
        f = facts["hosts"][name]
        seen_by = [p for p, v in views.items() if p != name and v["nodes"].get(name) == "offline"]
        peer_note = (f"{', '.join(seen_by)} sees {name} OFFLINE" if seen_by else None)
        if not f.get("ssh"):
            ev = [f"ssh to {name} fails: {f.get('ssh_error') or 'no answer'}"]
            if peer_note:
                ev.append(peer_note)
            if f.get("power") == "off":
                ev.append(f"power check: {name} is powered OFF")
                found.append(("power", name, ev))
            else:
                if f.get("power") == "on":
                    ev.append(f"power check: {name} is powered on, so the network is at fault")
                else:
                    ev.append(f"no power_check in the inventory for {name}: check its power "
                              f"first (power and network failures look the same from here)")
                found.append(("network", name, ev))
        elif not f.get("crm"):
            ev = [f"ssh to {name} works but crm_mon fails there: {f.get('crm_error')}"]
            if peer_note:
                ev.append(peer_note)
            found.append(("heartbeat", name, ev))
    # both answer ssh and crm_mon, but each sees the other OFFLINE: the interconnect is cut
    for name in order:
        v = views.get(name)
        if not v:
            continue
        for other in order:
            if other == name or other not in views:
                continue
            if v["nodes"].get(other) == "offline" and views[other]["nodes"].get(name) == "offline":
                if not any(p[1] in (name, other) for p in found):
                    found.append(("network", other, [
                        f"{name} and {other} both answer ssh, but each sees the other OFFLINE "
                        f"(cluster interconnect cut: split brain)"]))
    return found


def resync_source(facts, target):
    """(source, target, evidence lines, forced) for a resync of the failed host TARGET.

    The source is, by priority: the one written down when the failure was diagnosed (journal),
    the first degenerated view recorded since the backends were last in sync, pgpool's current
    view, the other host. When pgpool now names another backend as the newest, that view came
    from a pgpool restarted with a stale status file (split brain): it is reported as a
    contradiction, the target becomes the other backend, and forced is True (sync.resync
    refuses a contradicted source without --force)."""
    ev = []
    pending = facts.get("pending") or {}
    first = facts.get("first_degenerated") or {}
    pool = facts.get("pgpool") or {}
    current = pool.get("newest") if pool.get("reachable") and pool.get("degenerated") else None
    source, why = None, None
    first_view = (first.get("evidence") or {}).get("pool_nodes")
    for cand, label in ((first.get("newest"), f"first degenerated view recorded since the backends "
                                              f"were last in sync ({first.get('ts')}: "
                                              f"{first_view})"),
                        (pending.get("source"), f"written down when the {pending.get('pattern')} "
                                                f"failure of {pending.get('host')} was diagnosed "
                                                f"({pending.get('ts')})"),
                        (current, "pgpool now (SHOW pool_nodes)")):
        if cand and cand in facts["order"]:
            source, why = cand, label
            break
    if source is None or source == target and not (pending.get("source") or first.get("newest")):
        others = [h for h in facts["order"] if h != target]
        source = others[0] if others else None
        why = "the other backend (nothing recorded)"
    if target is None or target == source:
        others = [h for h in facts["order"] if h != source]
        target = others[0] if others else None
    ev.append(f"newest data (resync source): {source}, {why}; resync target: {target}")
    forced = False
    if current and current != source:
        forced = True
        ev.append(f"CONTRADICTION: pgpool now names {current} as the newest backend, but {source} "
                  f"was recorded first: pgpool restarted with a stale view (split brain). Writes "
                  f"made through pgpool since then are only on {current}; the resync from "
                  f"{source} would replace them: the operator chooses (db.recover --source H)")
    return source, target, ev, forced


def diagnose_db(facts):
    """Pure: facts collected from a DB cluster -> {"pattern", "host", "evidence", "plan",
    "steps", "source", "problems"}.

    The pattern is the first of DB_PATTERNS that holds (table 5-4), or "healthy". The plan
    lists every step of its recovery; recover runs the first non-conditional step, collects
    the facts again and decides anew.
    """
    order = facts["order"]
    hosts = facts["hosts"]
    group = facts.get("group")
    rid = facts.get("pgpool_resource")
    method = facts.get("method") or "dump"
    problems = list(_unreachable_problems(facts, order))
    gnode = _group_node(facts)
    views = _views(facts)
    pool = facts.get("pgpool") or {}

    # pgpool start (or monitor) failures: Failed actions: pgpool_start_0 (node=db01 ...)
    for f in _all_failed(facts):
        if f.get("resource") in (rid, group) or (rid is None and f.get("resource")):
            problems.append(("pgpool", f.get("node"), [
                f"Failed actions: {f.get('resource')} {f.get('operation')} on {f.get('node')} "
                f"rc={f.get('rc')} {f.get('reason') or ''}".rstrip()]))
        else:
            problems.append(("pgpool", f.get("node"), [
                f"Failed actions: {f.get('resource')} {f.get('operation')} on {f.get('node')} "
                f"rc={f.get('rc')} (not pgpool: clean it up after fixing its cause)"]))
    # PostgreSQL not running / refusing connections on a host we can reach
    for name in order:
        f = hosts[name]
        if f.get("ssh") and f.get("pg") is not None:
            p = f["pg"]
            if not p.get("running"):
                problems.append(("postgres", name, [f"PostgreSQL is not running on {name} "
                                                    f"(pg_ctl status)"]))
            elif not p.get("connect"):
                problems.append(("postgres", name, [
                    f"PostgreSQL runs on {name} (port {p.get('port')}) but refuses a direct "
                    f"connection"]))
    # pgpool degenerated: a backend down in SHOW pool_nodes
    if pool.get("reachable"):
        down = [b for b in pool.get("backends", []) if b.get("status") != "up"]
        writers = ", ".join(x.get("host") for x in pool["backends"]
                            if x.get("status") == "up") or "nothing"
        for b in down:
            problems.append(("degenerated", b.get("host"), [
                f"SHOW pool_nodes: backend {b.get('node_id')} ({b.get('host')}) is "
                f"{b.get('status')}: pgpool runs degenerated, writes reach {writers}"]))
    elif views and gnode:
        problems.append(("pgpool", gnode, [f"{group} runs on {gnode} but pgpool does not answer: "
                                            f"{pool.get('error')}"]))
    elif views and not gnode and not any(p[0] in ("power", "network", "heartbeat")
                                         for p in problems):
        where = "; ".join(f"{r['id']} {r.get('role')} {','.join(r.get('nodes') or []) or '-'}"
                          for v in views.values() for r in v.get("resources", []))
        problems.append(("pgpool", None, [f"group {group} is not started on one node "
                                          f"({where or 'no resource seen'}) and pgpool does not "
                                          f"answer: {pool.get('error')}"]))
    # every node online?
    for name, v in views.items():
        for node, st in v["nodes"].items():
            if st == "standby":
                problems.append(("heartbeat", node, [f"{name} sees {node} in standby"]))
    pending = facts.get("pending")

    if not problems and not pending:
        evidence = [f"{', '.join(f'{n} online' for n in order)}; {group} started on {gnode}",
                    "pgpool: " + ", ".join(f"{b.get('host')} {b.get('status')}"
                                          for b in pool.get("backends", [])),
                    "PostgreSQL accepts direct connections on " + ", ".join(order)]
        steps = []
        if facts.get("failback_to") and gnode and gnode != facts["failback_to"]:
            steps.append(_step("db.failback", f"move {group} back to {facts['failback_to']} "
                                              f"(--failback)", to=facts["failback_to"]))
        return _result("healthy", None, evidence, steps, None, [])

    if problems:
        rank = {p: i for i, p in enumerate(DB_PATTERNS)}
        problems.sort(key=lambda p: rank[p[0]])
        pattern, host = problems[0][0], problems[0][1]
    else:
        pattern, host = pending["pattern"], pending.get("host")
    evidence = []
    for p in problems:
        for line in p[2]:
            if line not in evidence:
                evidence.append(line)
    if not problems and pending:
        evidence.append(f"no resync since the {pending['pattern']} failure of "
                        f"{pending.get('host')} diagnosed at {pending.get('ts')}: the backends "
                        f"may differ")
    hosts_with = lambda pat: [p[1] for p in problems if p[0] == pat]  # noqa: E731

    steps = []
    source = None
    needs_resync = (pattern in RESYNC_PATTERNS or bool(hosts_with("degenerated"))
                    or bool(pending))
    resync_target = host
    if pattern in ("power", "network"):
        f = hosts[host]
        if pattern == "power":
            steps.append(_manual(f"power on {host} and confirm its OS boots (runbook 5.2.2 a); "
                                 f"then run db.recover again"))
        elif not f.get("ssh"):
            steps.append(_manual(f"restore {host}'s network: cables, switch ports, firewall; "
                                 f"both DB nodes must ping each other (runbook 5.2.2 b); then "
                                 f"run db.recover again"))
        else:
            steps.append(_manual(f"restore the cluster interconnect between the DB nodes "
                                 f"(cables, switches, firewall); then run db.recover again"))
            steps[-1]["settle"] = SETTLE
        steps.append(_step("hb.start", f"start the cluster stack on {host} if it did not start "
                                       f"at boot", conditional=True, host=host))
        steps.append(_step("pg.start", f"start PostgreSQL on {host} if it did not start at boot",
                           conditional=True, host=host))
        steps[-2]["label"] = steps[-1]["label"] = "if needed:"
    elif pattern == "heartbeat":
        f = hosts.get(host) or {}
        st = [v["nodes"].get(host) for v in views.values()]
        if "standby" in st and f.get("crm"):
            steps.append(_step("hb.online", f"{host} is in standby: bring it online", node=host))
        else:
            steps.append(_step("hb.start", f"start the cluster stack on {host} and wait for online "
                                           f"(else read hb.log --host {host})", host=host))
    elif pattern == "pgpool":
        failed = [f for f in _all_failed(facts) if f.get("node") == host]
        if failed and hosts.get(host, {}).get("ssh"):
            steps.append(_step("pgpool.check", f"pgpool -n on {host} shows the configuration "
                                               f"error", host=host))
            steps.append(_manual(f"fix the error pgpool.check shows in {host}'s pgpool.conf, "
                                 f"then run db.recover again", conditional=True))
        for f in failed:
            steps.append(_step("hb.cleanup", f"clear the failed {f.get('operation')} of "
                                             f"{f.get('resource')} on {host}",
                               resource=f.get("resource"), node=host))
        if not failed:
            # no Failed action (yet): Pacemaker's monitor has not noticed; it restarts pgpool
            steps.append(_step("wait", f"wait for Pacemaker to notice and for pgpool to answer "
                                       f"(else a Failed action shows what to fix)"))
            steps[-1]["text"] = f"{group} started and pgpool answering"
    elif pattern == "postgres":
        steps.append(_step("pg.start", f"start PostgreSQL on {host} and verify a direct "
                                       f"connection (else read its log)", host=host))
    # the other problems of lower rank that need their own step
    for pat, h, _ in problems[1:]:
        if pat == "heartbeat" and h != host and h in hosts and hosts[h].get("ssh"):
            steps.append(_step("hb.start", f"start the cluster stack on {h}", host=h))
        if pat == "postgres" and h != host:
            steps.append(_step("pg.start", f"start PostgreSQL on {h}", host=h))
    if needs_resync:
        if pattern not in RESYNC_PATTERNS and hosts_with("degenerated"):
            resync_target = hosts_with("degenerated")[0]
        if resync_target is None and pending:
            resync_target = pending.get("host")
        source, resync_target, src_ev, forced = resync_source(facts, resync_target)
        evidence.extend(src_ev)
        steps.append(_step("sync.resync", f"copy the newest data from {source} onto "
                                          f"{resync_target} (5.2.2.2 f)", source=source,
                           target=resync_target, method=method, force=forced))
        if pattern == "degenerated" and host != resync_target:
            host = resync_target
    back = facts.get("failback_to")
    if back:
        steps.append(_step("db.failback", f"move {group} back to {back} (optional, --failback)",
                           to=back))
    else:
        steps.append(_step("db.failback", f"optional: move {group} back to {host} "
                                          f"(db.recover --failback)", conditional=True, to=host))
        steps[-1]["label"] = "optional:"
    return _result(pattern, host, evidence, steps, source, [p[:2] for p in problems])


def _result(pattern, host, evidence, steps, source, problems):
    return {"pattern": pattern, "host": host, "evidence": evidence,
            "plan": [_render(s) for s in steps], "steps": steps, "source": source,
            "problems": [list(p) for p in problems]}


def journal_facts(records, cluster, kind="db"):
    """Pure: from the journal's records of CLUSTER -> {"pending", "first_degenerated"}.

    pending: the first failure diagnosis that needs a resync and was not followed by a
    resync (sync.resync, pgpool.recover) or a successful recover. first_degenerated: the
    first newest-data record showing pgpool degenerated since the backends were last seen in
    sync or resynced: the backend that kept the writes when the trouble began."""
    pending, first = None, None
    for r in records:
        if r.get("cluster") != cluster:
            continue
        ev, action = r.get("event"), r.get("action") or ""
        if ev == "diagnosis" and r.get("pattern") in RESYNC_PATTERNS and kind == "db":
            if pending is None:
                pending = {k: r.get(k) for k in ("pattern", "host", "source", "ts")}
        elif ev == "done" and action in ("sync.resync", "pgpool.recover"):
            pending, first = None, None
        elif ev == "done" and action == f"{kind}.recover" and not r.get("parent"):
            pending = None
        elif ev == "newest":
            evd = r.get("evidence") or {}
            in_sync = evd.get("in_sync")
            if in_sync is None:
                in_sync = not evd.get("degenerated", False)
            if in_sync:
                first = None
            elif first is None:
                first = {k: r.get(k) for k in ("newest", "ts", "evidence")}
    return {"pending": pending, "first_degenerated": first}


# =========================================================================== facts (I/O)


def power_state(ctx, host):
    """'on' / 'off' from the inventory's power_check command (run here), None if unknown."""
    spec = (host.vars or {}).get("power_check")
    if not spec:
        return None
    argv = shlex.split(spec.replace("{host}", host.name))
    if argv and "/" in argv[0] and not argv[0].startswith("/"):
        argv[0] = remote.inventory(ctx).resolve_path(argv[0])
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {0: "on", 1: "off"}.get(proc.returncode)


def crm_error(stdout, stderr, rc):
    """Pure: the reason crm_mon gave for failing (its XML <error> lines or status message)."""
    errors = re.findall(r"<error>([^<]*)</error>", stdout or "")
    if errors:
        return errors[-1].strip()
    m = re.search(r'<status code="(\d+)" message="([^"]*)"', stdout or "")
    if m:
        return f"{m.group(2)} (code {m.group(1)})"
    lines = (stderr or stdout or "").strip().splitlines()
    return lines[-1] if lines else f"crm_mon exited {rc}"


def probe_crm(ctx, host, group):
    """crm_mon on HOST: (view or None, error or None). UnreachableError if ssh fails."""
    res = remote.run(ctx, host, hb.CRM_MON, probe=True, warn=True, timeout=30)
    text = res.stdout or ""
    if res.exited != 0 or "<pacemaker-result" not in text:
        return None, crm_error(text, res.stderr, res.exited)
    try:
        state = crm.parse_crm_mon_xml(text)
    except Exception as exc:  # half-started stack
        return None, f"crm_mon output not understood: {exc}"
    if not state.get("nodes"):
        return None, "crm_mon shows no node (stack starting or stopping)"
    return crm_view(state, group), None


def _probe_db_host(ctx, c, name):
    host = remote.inventory(ctx).host(name)
    out = {"ssh": False, "ssh_error": None, "power": None, "crm": None, "crm_error": None,
           "pg": None}
    try:
        out["crm"], out["crm_error"] = probe_crm(ctx, host, c.vars.get("group"))
        out["ssh"] = True
        if c.kind == "db":
            st = pg.server_state(ctx, host)
            port = st.get("port") or int(host.vars.get("pg_port") or 5432)
            out["pg"] = {"running": st["running"], "port": st.get("port"),
                         "connect": pg.connectable(ctx, host, port) if st["running"] else False}
    except UnreachableError as exc:
        out["ssh"] = False
        out["ssh_error"] = exc.message
    if not out["ssh"]:
        out["power"] = power_state(ctx, host)
    return out


def collect_db(ctx, c, failback_to=None, method="dump"):
    """Every fact db.diagnose decides on, read in parallel (read-only, runs under --dry)."""
    order = c.host_names
    jobs = {f"host:{n}": (lambda n=n: _probe_db_host(ctx, c, n)) for n in order}
    jobs["pgpool"] = lambda: pgpool.status(ctx, c.name, record=False)
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
    facts.update(journal_facts(journal.Journal(ctx).records(), c.name))
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
            pgpool.record_newest(ctx, c.name, f"{c.kind}.diagnose saw pgpool degenerated")
    elif (result["pattern"] == "healthy" and first and not facts.get("pending")
          and pool.get("reachable") and pool.get("backends")):
        # degenerated before, in sync now: say so once, so the next trouble starts afresh
        pgpool.record_newest(ctx, c.name, f"{c.kind}.diagnose saw the backends in sync again")
    if result["pattern"] != "healthy" and result["pattern"] in RESYNC_PATTERNS:
        pend = facts.get("pending")
        if not pend:
            journal.Journal(ctx).write("diagnosis", c.name, f"{c.kind}.diagnose", {},
                                       pattern=result["pattern"], host=result["host"],
                                       source=result.get("source"), evidence=result["evidence"])


def diagnose_step(ctx, cluster=None, failback_to=None, method="dump", write=True):
    """Collect, decide, record: the diagnosis dict (+ "cluster", "facts")."""
    c = kind_cluster(ctx, "db", cluster)
    facts = collect_db(ctx, c, failback_to, method)
    result = diagnose_db(facts)
    if write:
        record(ctx, c, facts, result)
    return dict(result, cluster=c.name, facts=facts)


def _diagnosis_table(d):
    lines = [f"== {d['cluster']} cluster: {d['pattern'].upper()}"
             + (f" ({d['host']})" if d.get("host") else "")]
    lines.append("evidence:")
    lines += [f"  - {e}" for e in d["evidence"]]
    lines.append("recovery plan:" if d["plan"] else "recovery plan: nothing to do")
    lines += [f"  {i}. {p}" for i, p in enumerate(d["plan"], 1)]
    return "\n".join(lines)


def _public(d):
    return {k: v for k, v in d.items() if k not in ("steps",)}


@task(help={"format": "table or json", "cluster": "the DB cluster (default: the only one)",
            "method": "resync method named in the plan: dump (default), basebackup or online",
            "facts": "include the collected facts in the JSON"})
def diagnose(ctx, format=None, cluster=None, method="dump", facts=False):
    """Name the DB failure pattern with its evidence and recovery plan (5.2.2, table 5-4).

    Reads crm_mon on every node that answers (partitions show up as two views), pgpool's
    SHOW pool_nodes, PostgreSQL on each backend, ssh reachability, and the inventory's
    power_check for hosts that do not answer (power vs network). Patterns: power, network,
    heartbeat, pgpool, postgres, degenerated, or healthy. Writes down the newest-data
    backend and the failure (for db.recover). Exit 3 when a failure pattern is named.
    """
    fmt = output.resolve_format(ctx, format)
    check_method(method)
    d = diagnose_step(ctx, cluster, method=method)
    shown = _public(d)
    if not facts:
        shown.pop("facts", None)
    output.emit(shown, fmt, table=_diagnosis_table)
    if d["pattern"] != "healthy":
        raise StateError(f"{d['cluster']} cluster: {d['pattern']} failure"
                         + (f" of {d['host']}" if d.get("host") else "")
                         + f"; recovery: inv db.recover (plan above)")
    return d


# =========================================================================== failover / failback


def _state(ctx, c):
    state = hb.crm_status(ctx, c.name)
    return state


def _print_state(label, state):
    print(f"--- {label}")
    print(hb.summary(state), flush=True)


def _pgpool_answers(ctx, c, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return pgpool.read_pool_nodes(ctx, c.name)
        except HaError as exc:
            if time.monotonic() > deadline:
                raise HaError(f"pgpool does not answer {timeout:g}s after the move: {exc.message}",
                              HaError.NOT_CONVERGED) from None
        time.sleep(0.2)


def _record_async(ctx, c, reason):
    """Start recording the newest-data backend in a thread (it must be done before pgpool
    moves; it runs while the state is read). Returns a callable giving its result."""
    if c.kind != "db" or remote.is_dry(ctx):
        return lambda: None
    box = {}

    def work():
        try:
            box["rec"] = pgpool.record_newest(ctx, c.name, reason)
        except HaError as exc:
            box["err"] = exc

    t = threading.Thread(target=work, daemon=True)
    t.start()

    def result():
        t.join()
        if "err" in box:
            raise box["err"]
        return box.get("rec")

    return result


def move_group(ctx, c, src, dst, timeout, action, yes, recorded=None, record_reason=None):
    """Standby SRC, verify the group runs on DST, bring SRC online, verify it stays (no
    automatic failback in the DB cluster). The newest-data backend is recorded first
    (``recorded``: a callable from _record_async already started)."""
    group = c.vars.get("group")
    args = {"from": src, "to": dst, "timeout": timeout}
    summary = (f"move {group} from {src} to {dst}: standby {src}, verify on {dst}, "
               f"{src} online again")
    if recorded is None:
        recorded = _record_async(ctx, c, record_reason or f"{action}: pgpool moves")
    with journal.operation(ctx, c.name, action, args, yes=yes, summary=summary) as op:
        rec = recorded()
        if rec and rec.get("recorded"):
            op.note(f"newest data before the move: {rec.get('newest')}")
        hb.standby_step(ctx, src, timeout=timeout, yes=True)
        if remote.is_dry(ctx):
            print(f"[dry] would bring {src} online again and verify {group} stays on {dst}")
            return None
        after = hb.online_step(ctx, src, timeout=timeout, yes=True)

        def moved(s):
            return (crm.group_node(s, group) == dst and hb.node_state(s, src) == "online"
                    and hb.node_state(s, dst) == "online")

        if not (after and moved(after)):
            after = hb.wait_for(ctx, c.name, moved, timeout,
                                f"{group} started on {dst}, {src} and {dst} online")
        if c.kind == "db":
            _pgpool_answers(ctx, c, timeout)
    return after


def _online_others(state, node):
    return [n["name"] for n in state.get("nodes", [])
            if n["name"] != node and n["state"] == "online"]


def failover_step(ctx, from_=None, cluster=None, timeout=60, yes=False):
    c = kind_cluster(ctx, "db", cluster)
    if from_ is not None:
        cluster_host(ctx, c, from_, "from")
    timeout = checks.positive("timeout", timeout)
    group = c.vars.get("group")
    recorded = _record_async(ctx, c, "db.failover: pgpool moves")
    before = _state(ctx, c)
    _print_state("before", before)
    src = crm.group_node(before, group)
    if src is None:
        recorded()
        raise StateError(f"{group} is not started on one node: nothing to fail over "
                         f"(see inv db.diagnose)")
    if from_ and src != from_:
        raise StateError(f"{group} runs on {src}, not on {from_}: nothing to fail over from "
                         f"{from_}")
    others = _online_others(before, src)
    if not others:
        states = ", ".join(f"{n['name']} {n['state']}" for n in before["nodes"] if n["name"] != src)
        raise StateError(f"refusing to fail over from {src}: no other node is online to take "
                         f"{group} ({states})")
    after = move_group(ctx, c, src, others[0], timeout, "db.failover", yes, recorded=recorded)
    if after is not None:
        _print_state("after", after)
        print(f"{group} now runs on {others[0]}; {src} is online and the group stays on "
              f"{others[0]} (the DB cluster does not fail back by itself: inv db.failback)")
    return after


def home_node(ctx, c, state):
    """(node, why): where the group belongs: the CIB's location preference, else the node
    the last db.failover / db.maintenance moved it from (journal)."""
    from hatasks import lb

    policy = lb.read_policy(ctx, c, state["read_on"])
    if policy.get("preferred"):
        return policy["preferred"], (f"location preference in the CIB, score {policy['score']}; "
                                     f"stickiness {policy['stickiness']}")
    for r in reversed(journal.Journal(ctx).records()):
        if r.get("cluster") == c.name and r.get("event") == "start" and \
                r.get("action") == "db.failover" and (r.get("args") or {}).get("from"):
            return r["args"]["from"], f"db.failover moved it from there at {r.get('ts')}"
    return None, None


def failback_step(ctx, to=None, cluster=None, timeout=60, force=False, yes=False):
    c = kind_cluster(ctx, "db", cluster)
    if to is not None:
        cluster_host(ctx, c, to, "to")
    timeout = checks.positive("timeout", timeout)
    group = c.vars.get("group")
    before = _state(ctx, c)
    _print_state("before", before)
    not_online = [f"{n['name']} is {n['state'].upper()}" for n in before["nodes"]
                  if n["state"] != "online"]
    if not_online:
        raise StateError(f"refusing to fail back: both nodes must be online first "
                         f"({'; '.join(not_online)}); see inv db.diagnose")
    src = crm.group_node(before, group)
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
    pool = pgpool.status(ctx, c.name, record=False)
    if pool.get("reachable") and pool.get("degenerated") and not force:
        down = [b["host"] for b in pool["backends"] if b.get("status") != "up"]
        raise StateError(f"refusing to fail back while pgpool runs degenerated ({', '.join(down)} "
                         f"down): resync first (inv db.recover), or --force")
    after = move_group(ctx, c, src, to, timeout, "db.failback", yes)
    if after is not None:
        _print_state("after", after)
        print(f"{group} runs on {to} again; both nodes online")
    return after


@task(name="failover", help={"from": "node the group must be running on (default: where it runs)",
                             "cluster": "DB cluster (default: the only one)",
                             "timeout": "seconds for each verification (default 60)",
                             "yes": "do not ask for confirmation (needed without a terminal)"})
def failover(ctx, from_=None, cluster=None, timeout=60, yes=False):
    """Move the DB group to the other node by hand, verified (5.2.1 HB failover).

    crm_standby on the node running the group, verify the group is Started on the other
    node and pgpool answers, then bring the node back online: the group stays where it
    is (no automatic failback in the DB cluster). The newest-data backend is recorded first.
    """
    from hatasks import notify

    with notify.scenario(ctx, "db.failover"):
        failover_step(ctx, from_, cluster, timeout, yes)


@task(help={"to": "node to move the group back to (default: the node not running it)",
            "cluster": "DB cluster (default: the only one)",
            "timeout": "seconds for each verification (default 60)",
            "force": "even while pgpool runs degenerated",
            "yes": "do not ask for confirmation (needed without a terminal)"})
def failback(ctx, to=None, cluster=None, timeout=60, force=False, yes=False):
    """Move the DB group back to its node, verified (5.2.2.2 G, optional after 5.2.1/5.2.2).

    Both nodes must be online first (refused otherwise). Standby the node running the group,
    verify it is Started on --to, bring the node online again, verify both online.
    """
    from hatasks import notify

    with notify.scenario(ctx, "db.failback"):
        failback_step(ctx, to, cluster, timeout, force, yes)


# ======================================================================= maintenance (table 5-3)

FOR_KINDS = ("reboot", "pg-restart")
PG_ACTIONS = ("restart", "stop")


def maintenance_step(ctx, host, for_, pg_action="restart", cluster=None, timeout=60, yes=False):
    c = kind_cluster(ctx, "db", cluster)
    h = cluster_host(ctx, c, host, "host")
    if for_ not in FOR_KINDS:
        raise UsageError(f"--for must be one of {', '.join(FOR_KINDS)}, not {for_!r}")
    if pg_action not in PG_ACTIONS:
        raise UsageError(f"--pg must be restart or stop, not {pg_action!r}")
    timeout = checks.positive("timeout", timeout)
    group = c.vars.get("group")
    node_id = h.pgpool_node_id
    if node_id is None:
        raise UsageError(f"host {h.name}: inventory var pgpool_node_id is not set")
    before = _state(ctx, c)
    _print_state("before", before)
    pool = pgpool.read_pool_nodes(ctx, c.name)
    pgpool._print_nodes("pgpool before", pool)
    mine = [b for b in pool["backends"] if str(b.get("node_id")) == str(node_id)]
    others_up = [b for b in pool["backends"]
                 if str(b.get("node_id")) != str(node_id) and b.get("status") == "up"]
    if not others_up:
        raise StateError(f"refusing maintenance of {h.name}: no other backend is up in pgpool "
                         f"(the service would stop); see inv db.diagnose")
    gnode = crm.group_node(before, group)
    move = for_ == "reboot" and gnode == h.name
    other_nodes = _online_others(before, h.name)
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
    with journal.operation(ctx, c.name, "db.maintenance", args, yes=yes,
                           summary="; ".join(steps)) as op:
        if move:
            move_group(ctx, c, h.name, other_nodes[0], timeout, "db.failover", True,
                       record_reason=f"db.maintenance of {h.name}: failover")
        if not remote.is_dry(ctx):
            rec = pgpool.record_newest(ctx, c.name,
                                       f"db.maintenance of {h.name}: before the switch")
            op.note(f"maintenance of {h.name} for {for_}", host=h.name, group_was_on=gnode,
                    newest=rec.get("newest"))
        else:
            print(f"[dry] would record the newest-data backend of {c.name}")
        if mine and mine[0].get("status") == "up":
            pgpool.detach(ctx, h, node_id, int(timeout), reason=f"db.maintenance of {h.name}")
        else:
            print(f"{h.name} is already detached from pgpool")
        if for_ == "pg-restart":
            pg.stop(ctx, h, "fast", int(timeout))
            if pg_action == "restart":
                pg.start(ctx, h, None, int(timeout))
    if remote.is_dry(ctx):
        return None
    after = _state(ctx, c)
    _print_state("after", after)
    pgpool._print_nodes("pgpool after", pgpool.read_pool_nodes(ctx, c.name))
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


@task(help={"host": "DB server to take out", "for": "reboot (or shutdown) | pg-restart",
            "pg": "for pg-restart: restart (default) or stop PostgreSQL",
            "cluster": "DB cluster (default: the only one)",
            "timeout": "seconds for each verification (default 60)",
            "yes": "do not ask for confirmation (needed without a terminal)"})
def maintenance(ctx, host, for_="reboot", pg="restart", cluster=None, timeout=60, yes=False):
    """Prepare one DB server for a reboot or a PostgreSQL restart the runbook's way (table 5-3).

    Fail over if the group runs there (reboot), record the newest-data backend, detach the
    backend from pgpool (pgpool switch), and for pg-restart restart (or --pg stop) PostgreSQL.
    Then says what to do next; `inv db.recover` brings the server back afterwards.
    """
    from hatasks import notify

    with notify.scenario(ctx, "db.maintenance", f"--host {host} --for {for_}"):
        maintenance_step(ctx, host, for_, pg, cluster, timeout, yes)


# =========================================================================== recovery


class NeedsHuman(HaError):
    def __init__(self, message):
        super().__init__(f"needs a human: {message}", HaError.STATE)


def _step_key(step):
    return (step["task"], tuple(sorted((step.get("args") or {}).items())))


def _settled(d, diagnose_fn):
    """While the first step is a manual one marked "settle", diagnose again for that long
    (the state may be a transient one, e.g. a node joining); return the last diagnosis."""
    todo = [s for s in d["steps"] if not s.get("conditional")]
    if not todo or todo[0]["task"] != "manual" or not todo[0].get("settle"):
        return d
    deadline = time.monotonic() + todo[0]["settle"]
    print(f"waiting up to {todo[0]['settle']}s: the nodes may still be joining", flush=True)
    while time.monotonic() < deadline:
        time.sleep(2)
        d = diagnose_fn()
        todo = [s for s in d["steps"] if not s.get("conditional")]
        if not todo or todo[0]["task"] != "manual" or not todo[0].get("settle"):
            return d
    return d


def run_recovery(ctx, c, action, diagnose_fn, execute_fn, args, yes, max_steps=MAX_STEPS):
    """The recover loop shared by db.recover and lb.recover: diagnose, show the plan,
    confirm once, then run the first step of a fresh plan until healthy. Stops at a step
    that needs a human (exit 3). NOT_CONVERGED when a step comes up twice in a row."""
    first = _settled(diagnose_fn(), diagnose_fn)
    print(_diagnosis_table(first), flush=True)
    todo = [s for s in first["steps"] if not s.get("conditional")]
    if first["pattern"] == "healthy" and not todo:
        print(f"{c.name} cluster is healthy: nothing to recover")
        return first
    if todo and todo[0]["task"] == "manual":
        raise NeedsHuman(todo[0]["text"])
    summary = f"{first['pattern']} recovery: " + "; ".join(first["plan"])
    done, passed = [], set()
    with journal.operation(ctx, c.name, action, args, yes=yes, summary=summary) as op:
        d = first
        for _ in range(max_steps):
            # a check that passed (pgpool.check, web.check) is not run again for the same failure
            todo = [s for s in d["steps"] if not s.get("conditional")
                    and _step_key(s) not in passed]
            if d["pattern"] == "healthy" and not todo:
                break
            if not todo:
                raise HaError(f"{c.name}: {d['pattern']} failure and no step left to run: "
                              f"escalate to the system administrator", HaError.NOT_CONVERGED)
            step = todo[0]
            if step["task"] == "manual":
                raise NeedsHuman(step["text"])
            if done and done[-1] == _step_key(step):
                raise HaError(f"step `{_render(step)}` did not cure the {d['pattern']} failure: "
                              f"escalate to the system administrator "
                              f"({'; '.join(d['evidence'][:3])})",
                              HaError.NOT_CONVERGED)
            print(f"=== step {len(done) + 1}: {_render(step)}  ({step['why']})", flush=True)
            execute_fn(step)
            if step["task"].endswith(".check"):
                passed.add(_step_key(step))
            if op is not None and not remote.is_dry(ctx):
                op.checkpoint(_render(step))
            done.append(_step_key(step))
            if remote.is_dry(ctx):
                print("[dry] the following steps depend on the state this one leaves: "
                      "not shown further", flush=True)
                return d
            d = _settled(diagnose_fn(), diagnose_fn)
            print(f"--- now: {d['pattern']}" + (f" ({d['host']})" if d.get("host") else ""),
                  flush=True)
        else:
            raise HaError(f"{c.name}: not healthy after {max_steps} steps: {d['pattern']}",
                          HaError.NOT_CONVERGED)
    print(_diagnosis_table(d), flush=True)
    return d


def cluster_idle(ctx, c):
    """True when the cluster's DC reports S_IDLE (no transition running) and the group is
    started on one node (read-only)."""
    try:
        state = hb.crm_status(ctx, c.name)
    except HaError:
        return False
    dc = state.get("dc")
    if not dc or crm.group_node(state, c.vars.get("group")) is None:
        return False
    res = remote.run(ctx, state["read_on"], f"crmadmin -S {shlex.quote(dc)}", probe=True,
                     warn=True, timeout=30)
    return res.exited == 0 and "S_IDLE" in (res.stdout or "")


def wait_settled(ctx, c, timeout, need_pgpool=True):
    """Wait until the cluster is idle (no transition: e.g. a merge recovering resources
    'active on 2 nodes'), twice in a row a second apart, and pgpool answers."""
    deadline = time.monotonic() + timeout
    streak = 0
    while True:
        ok = cluster_idle(ctx, c)
        if ok and need_pgpool:
            try:
                pgpool.read_pool_nodes(ctx, c.name)
            except HaError:
                ok = False
        streak = streak + 1 if ok else 0
        if streak >= 2:
            return
        if time.monotonic() > deadline:
            raise HaError(f"{c.name} cluster not settled after {timeout:g}s (a transition runs, "
                          f"the group is not started or pgpool does not answer): see hb.status",
                          HaError.NOT_CONVERGED)
        time.sleep(1)


def execute_db_step(ctx, c, step, timeout, chosen_source=None):
    """Run one plan step. chosen_source: the operator's db.recover --source (split brain)."""
    t, a = step["task"], step.get("args") or {}
    if t in ("sync.resync", "db.failback") and not remote.is_dry(ctx):
        wait_settled(ctx, c, max(timeout, 60))
    if t == "hb.start":
        hb.start_step(ctx, a["host"], timeout=max(timeout, 120), yes=True)
    elif t == "hb.online":
        hb.online_step(ctx, a["node"], timeout=timeout, yes=True)
    elif t == "hb.cleanup":
        hb.cleanup_step(ctx, a["resource"], a["node"], timeout=timeout, yes=True)
    elif t == "pg.start":
        h = pg.db_host(ctx, a["host"])
        with journal.operation(ctx, c.name, "pg.start", {"host": h.name}, yes=True):
            pg.start(ctx, h, None, int(timeout))
    elif t == "pgpool.check":
        data = pgpool.check(ctx, a["host"])
        if not data["ok"]:
            for e in data["errors"]:
                print(f"  {a['host']} pgpool -n: {e}", file=sys.stderr, flush=True)
            raise NeedsHuman(f"pgpool does not start on {a['host']} ({data['errors'][0]}): fix "
                             f"{data.get('config')} there, then run db.recover again")
        print(f"{a['host']}: pgpool -n starts cleanly: the configuration is fixed")
    elif t == "sync.resync":
        try:
            from hatasks import sync
        except ImportError:
            raise StateError("hatasks.sync is not available: resync by hand (runbook 5.2.2.2 f)") \
                from None
        source, target, force = a["source"], a["target"], bool(a.get("force"))
        if force:
            # split brain: both backends may hold writes the other lacks. Picking the source
            # is the operator's decision, never ours: the resync keeps the target's data
            # (data.<date> directory and a safety dump), but it leaves the live database.
            chosen = chosen_source
            if chosen is None:
                raise NeedsHuman(
                    f"split brain: pgpool now names {target} as the newest backend but {source} "
                    f"was recorded first; writes made through pgpool since the merge may be only "
                    f"on {target}. Check both, then choose the source: inv db.recover --source "
                    f"{source} (the recorded one) or --source {target}. The other backend's data "
                    f"is kept in its data.<date> directory and a safety dump, never deleted")
            if chosen != source:
                source, target = chosen, source
            print(f"WARNING: resync from {source} onto {target} chosen by the operator "
                  f"(split brain, see the evidence)", file=sys.stderr, flush=True)
        sync.resync(ctx, source=source, target=target, method=a.get("method", "dump"),
                    force=force, yes=True)
    elif t == "db.failback":
        failback_step(ctx, a["to"], c.name, timeout, yes=True)
    elif t == "wait":
        group = c.vars.get("group")
        hb.wait_for(ctx, c.name, lambda s: crm.group_node(s, group) is not None, timeout,
                    f"{group} started")
        _pgpool_answers(ctx, c, timeout)
    else:
        raise StateError(f"unknown plan step {t}")


def recover_step(ctx, cluster=None, method="dump", failback=False, to=None, timeout=60, yes=False,
                 source=None):
    c = kind_cluster(ctx, "db", cluster)
    check_method(method)
    timeout = checks.positive("timeout", timeout)
    if to is not None:
        cluster_host(ctx, c, to, "to")
    if source is not None:
        cluster_host(ctx, c, source, "source")
    state = {"failback_to": to}

    def diag():
        d = diagnose_step(ctx, c.name, failback_to=state["failback_to"], method=method)
        if failback and state["failback_to"] is None and d.get("host"):
            state["failback_to"] = d["host"]
            d = diagnose_db(dict(d["facts"], failback_to=d["host"]))
            d["cluster"] = c.name
        return d

    args = {"method": method, "failback": failback, "to": to, "source": source}
    return run_recovery(ctx, c, "db.recover", diag,
                        lambda step: execute_db_step(ctx, c, step, timeout, source), args, yes)


@task(help={"method": "resync method: dump (default, the runbook's), basebackup or online",
            "failback": "move the group back to the recovered node at the end (optional step G)",
            "to": "with --failback: the node to move the group to (default: the failed node)",
            "cluster": "DB cluster (default: the only one)",
            "timeout": "seconds for each verification (default 60)",
            "yes": "do not ask for confirmation (needed without a terminal)",
            "source": "after a split brain only: the backend whose data wins (your decision)"})
def recover(ctx, method="dump", failback=False, to=None, cluster=None, timeout=60, yes=False,
            source=None):
    """Recover the DB cluster from the diagnosed failure, step by step (5.2.2, table 5-4).

    Runs the plan db.diagnose prints: start the cluster stack and wait for online; show the
    pgpool configuration error and stop until it is fixed, then clean up the failed action;
    start PostgreSQL and verify; resync when the data diverged; fail back with --failback.
    After each step the cluster is diagnosed again. A step that needs a human (power,
    network, a configuration edit) is named and the task exits 3 until it is done.
    """
    from hatasks import notify

    with notify.scenario(ctx, "db.recover"):
        recover_step(ctx, cluster, method, failback, to, timeout, yes, source)
