"""Diagnosis rules of the DB and LB clusters: facts -> failure pattern, evidence, recovery plan.

Everything here is pure: it reads the facts db/lb collected (crm_mon from every node that
answers, pgpool, PostgreSQL, ssh and power reachability, the page behind the VIP, the journal's
records) and returns data. A diagnosis runs in three stages that each read top to bottom:

1. detection: every rule appends (pattern, host, evidence lines) for what it sees wrong;
2. ranking: the problems sorted by the order of the runbook's table (power first), their
   evidence merged: the first problem names the pattern and the host;
3. planning: the recovery steps of that pattern, then what the lower-ranked problems need.

A plan step is a dict: {"task": "hb.start", "args": {...}, "why": "..."} plus "conditional"
(shown, not run by recover), "label", "text" (manual and wait steps), "settle" (seconds a
possibly transient state is given before a human is called).
"""

import xml.etree.ElementTree as ET

from hatasks import crmmon, shell
#: table 5-4 rows (plus "healthy"), in the order a diagnosis names them when several hold
DB_PATTERNS = ("power", "network", "heartbeat", "pgpool", "postgres", "degenerated")
#: patterns whose recovery includes a data resync (table 5-4, column "data resync"; a fenced
#: node is a powered-off one the cluster cut)
RESYNC_PATTERNS = ("power", "network", "postgres", "degenerated", "fenced")
#: table 5-2 rows, same rule
LB_PATTERNS = ("power", "network", "heartbeat", "httpd")
#: seconds a view that may be transient (a node that just started sees its peer OFFLINE until
#: the membership forms) is given to change before recover calls for a human
SETTLE = 30


# =========================================================================== plan steps (data)


def step(task_name, why, conditional=False, **args):
    """A plan step running the task TASK_NAME with ARGS (its command-line options)."""
    out = {"task": task_name, "args": args, "why": why}
    if conditional:
        out["conditional"] = True
    return out


def manual(text, conditional=False):
    """A plan step only a human can do: recover stops there."""
    out = {"task": "manual", "args": {}, "text": text, "why": "needs a human"}
    if conditional:
        out["conditional"] = True
    return out


def started_after_boot(host):
    """The two steps after a DB host comes back (power, network, fencing): its cluster stack
    and PostgreSQL, each started only if it did not start at boot."""
    out = [step("hb.start", f"start the cluster stack on {host} if it did not start at boot",
                conditional=True, host=host),
           step("pg.start", f"start PostgreSQL on {host} if it did not start at boot",
                conditional=True, host=host)]
    for s in out:
        s["label"] = "if needed:"
    return out


def wait(text, why, conditional=False, **args):
    """A plan step that waits until the cluster shows TEXT (Pacemaker acts by itself)."""
    out = step("wait", why, conditional, **args)
    out["text"] = text
    return out


def render(plan_step):
    """A plan step as the line the operator would type (manual steps as plain words)."""
    if plan_step["task"] == "manual":
        return f"manual: {plan_step['text']}"
    if plan_step["task"] == "wait":
        return f"wait: {plan_step['text']}"
    parts = [plan_step["label"]] if plan_step.get("label") else []
    parts += ["inv", plan_step["task"]]
    for key, value in plan_step.get("args", {}).items():
        if value is True:
            parts.append(f"--{key}")
        elif value not in (None, False):
            parts += [f"--{key}", shell.q(value)]
    return " ".join(parts)


def result(pattern, host, evidence, steps, source, problems):
    """The diagnosis dict every diagnose task prints (plan = the steps rendered)."""
    return {"pattern": pattern, "host": host, "evidence": evidence,
            "plan": [render(s) for s in steps], "steps": steps, "source": source,
            "problems": [list(p[:2]) for p in problems]}


# =========================================================================== facts helpers


def crm_view(state, group):
    """The part of a parsed crm_mon a diagnosis needs (JSON-able, small)."""
    return {
        "nodes": {n["name"]: n["state"] for n in state.get("nodes", [])},
        "group_node": crmmon.group_node(state, group) if group else None,
        "flags": {"maintenance_mode": bool(state.get("maintenance_mode")),
                  "stop_all_resources": bool(state.get("stop_all_resources")),
                  "quorum": state.get("quorum"), "stonith_enabled": state.get("stonith_enabled"),
                  "dc": state.get("dc")},
        "node_flags": {n["name"]: {k: bool(n.get(k)) for k in
                                   ("maintenance", "standby", "unclean", "pending", "online")}
                       for n in state.get("nodes", [])},
        "bans": [dict(b) for b in state.get("bans", [])],
        "resources": [{"id": r.get("id"), "node": r.get("node"), "role": r.get("role"),
                       "nodes": r.get("nodes") or ([r["node"]] if r.get("node") else []),
                       "managed": r.get("managed", True), "maintenance": bool(r.get("maintenance")),
                       "target_role": r.get("target_role"), "blocked": bool(r.get("blocked")),
                       "failed": bool(r.get("failed"))}
                      for r in state.get("resources", [])
                      if not group or r.get("group") == group or r.get("id") == group],
        "failed_actions": [{k: f.get(k) for k in ("resource", "node", "operation", "rc", "reason")}
                           for f in state.get("failed_actions", [])],
    }


def views(facts):
    """{host: crm view} of the hosts whose crm_mon answered."""
    return {n: f["crm"] for n, f in facts["hosts"].items() if f.get("crm")}


def agreed_group_node(facts):
    """Where the group runs according to the views that answer (None: nowhere / they differ)."""
    spots = {v.get("group_node") for v in views(facts).values()}
    spots.discard(None)
    return spots.pop() if len(spots) == 1 else None


def failed_actions(facts):
    """The Failed actions of every view, each (resource, node, operation) once."""
    seen, out = set(), []
    for view in views(facts).values():
        for f in view.get("failed_actions", []):
            key = (f.get("resource"), f.get("node"), f.get("operation"))
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def standby_nodes(facts):
    """(viewer, node) for every node a view shows in standby."""
    return [(name, node) for name, v in views(facts).items()
            for node, st in v["nodes"].items() if st == "standby"]


def _failed_line(f):
    return f"Failed actions: {f.get('resource')} {f.get('operation')} on {f.get('node')} " \
           f"rc={f.get('rc')}"


# =========================================================================== detection (shared)


def stack_down(host_facts):
    """True when a host answers ssh but its own crm_mon fails: its cluster stack is down (the
    heartbeat pattern, repaired by the plan's hb.start)."""
    return bool(host_facts.get("ssh")) and not host_facts.get("crm")


def unreachable_problems(facts):
    """(pattern, host, evidence) for hosts the operator cannot reach or whose stack is down,
    and for two nodes that both answer but see each other OFFLINE (interconnect cut)."""
    order = facts["order"]
    found = []
    seen = views(facts)
    for name in order:
        f = facts["hosts"][name]
        seen_by = [p for p, v in seen.items() if p != name and v["nodes"].get(name) == "offline"]
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
        elif stack_down(f):
            ev = [f"ssh to {name} works but crm_mon fails there: {f.get('crm_error')}"]
            if peer_note:
                ev.append(peer_note)
            found.append(("heartbeat", name, ev))
    for name in order:
        v = seen.get(name)
        if not v:
            continue
        for other in order:
            if other == name or other not in seen:
                continue
            if v["nodes"].get(other) == "offline" and seen[other]["nodes"].get(name) == "offline":
                if not any(p[1] in (name, other) for p in found):
                    found.append(("network", other, [
                        f"{name} and {other} both answer ssh, but each sees the other OFFLINE "
                        f"(cluster interconnect cut: split brain)"]))
    return found


# =========================================================================== ranking (shared)


def rank(problems, patterns):
    """PROBLEMS sorted by the order of PATTERNS (stable: same rank keeps detection order)."""
    order = {p: i for i, p in enumerate(patterns)}
    return sorted(problems, key=lambda p: order[p[0]])


def merged_evidence(problems):
    """The evidence lines of every problem, in rank order, each once."""
    out = []
    for p in problems:
        for line in p[2]:
            if line not in out:
                out.append(line)
    return out


# =========================================================================== DB: detection


def db_failed_problems(facts):
    """pgpool start (or monitor) failures, and other Failed actions to clean up."""
    rid, group = facts.get("pgpool_resource"), facts.get("group")
    found = []
    for f in failed_actions(facts):
        if f.get("resource") in (rid, group) or (rid is None and f.get("resource")):
            found.append(("pgpool", f.get("node"),
                          [f"{_failed_line(f)} {f.get('reason') or ''}".rstrip()]))
        else:
            found.append(("pgpool", f.get("node"), [
                f"{_failed_line(f)} (not pgpool: clean it up after fixing its cause)"]))
    return found


def postgres_problems(facts):
    """PostgreSQL not running, or refusing connections, on a host that answers ssh."""
    found = []
    for name in facts["order"]:
        f = facts["hosts"][name]
        if not (f.get("ssh") and f.get("pg") is not None):
            continue
        p = f["pg"]
        if not p.get("running"):
            found.append(("postgres", name, [f"PostgreSQL is not running on {name} "
                                             f"(pg_ctl status)"]))
        elif not p.get("connect"):
            found.append(("postgres", name, [
                f"PostgreSQL runs on {name} (port {p.get('port')}) but refuses a direct "
                f"connection"]))
    return found


def pool_problems(facts, stack_down):
    """pgpool degenerated (a backend down in SHOW pool_nodes), or not answering while the
    group runs, or the group not started (unless STACK_DOWN already explains it)."""
    pool = facts.get("pgpool") or {}
    group = facts.get("group")
    gnode = agreed_group_node(facts)
    seen = views(facts)
    if pool.get("reachable"):
        down = [b for b in pool.get("backends", []) if b.get("status") != "up"]
        writers = ", ".join(x.get("host") for x in pool["backends"]
                            if x.get("status") == "up") or "nothing"
        return [("degenerated", b.get("host"), [
            f"SHOW pool_nodes: backend {b.get('node_id')} ({b.get('host')}) is "
            f"{b.get('status')}: pgpool runs degenerated, writes reach {writers}"]) for b in down]
    if seen and gnode:
        return [("pgpool", gnode, [f"{group} runs on {gnode} but pgpool does not answer: "
                                   f"{pool.get('error')}"])]
    if seen and not gnode and not stack_down:
        where = "; ".join(f"{r['id']} {r.get('role')} {','.join(r.get('nodes') or []) or '-'}"
                          for v in seen.values() for r in v.get("resources", []))
        return [("pgpool", None, [f"group {group} is not started on one node "
                                  f"({where or 'no resource seen'}) and pgpool does not "
                                  f"answer: {pool.get('error')}"])]
    return []


def detect_db(facts):
    """Every problem of a DB cluster, in detection order."""
    problems = unreachable_problems(facts)
    problems += db_failed_problems(facts)
    problems += postgres_problems(facts)
    stack_down = any(p[0] in ("power", "network", "heartbeat") for p in problems)
    problems += pool_problems(facts, stack_down)
    problems += [("heartbeat", node, [f"{viewer} sees {node} in standby"])
                 for viewer, node in standby_nodes(facts)]
    return problems


# =========================================================================== DB: planning


def db_healthy(facts):
    """The healthy diagnosis (with the failback step when db.recover --failback asked)."""
    order, group, pool = facts["order"], facts.get("group"), facts.get("pgpool") or {}
    gnode = agreed_group_node(facts)
    evidence = [f"{', '.join(f'{n} online' for n in order)}; {group} started on {gnode}",
                "pgpool: " + ", ".join(f"{b.get('host')} {b.get('status')}"
                                      for b in pool.get("backends", [])),
                "PostgreSQL accepts direct connections on " + ", ".join(order)]
    steps = []
    back = facts.get("failback_to")
    if back and gnode and gnode != back:
        steps.append(step("db.failback", f"move {group} back to {back} (--failback)", to=back))
    return result("healthy", None, evidence, steps, None, [])


def db_repair_steps(facts, pattern, host):
    """The steps that repair the top-ranked PATTERN on HOST (table 5-4, before any resync)."""
    hosts, group = facts["hosts"], facts.get("group")
    f = hosts.get(host) or {}
    steps = []
    if pattern in ("power", "network"):
        if pattern == "power":
            steps.append(manual(f"power on {host} and confirm its OS boots (runbook 5.2.2 a); "
                                f"then run db.recover again"))
        elif not f.get("ssh"):
            steps.append(manual(f"restore {host}'s network: cables, switch ports, firewall; "
                                f"both DB nodes must ping each other (runbook 5.2.2 b); then "
                                f"run db.recover again"))
        else:
            steps.append(manual("restore the cluster interconnect between the DB nodes "
                                "(cables, switches, firewall); then run db.recover again"))
            steps[-1]["settle"] = SETTLE
        steps.extend(started_after_boot(host))
    elif pattern == "heartbeat":
        if "standby" in [v["nodes"].get(host) for v in views(facts).values()] and f.get("crm"):
            steps.append(step("hb.online", f"{host} is in standby: bring it online", node=host))
        else:
            steps.append(step("hb.start", f"start the cluster stack on {host} and wait for online "
                                          f"(else read hb.log --host {host})", host=host))
    elif pattern == "pgpool":
        failed = [x for x in failed_actions(facts) if x.get("node") == host]
        # Pacemaker restarted it in place and it answers: its configuration works, only the
        # failure record is left (pgpool.check refuses next to a live pgpool)
        restarted = (agreed_group_node(facts) == host
                     and (facts.get("pgpool") or {}).get("reachable"))
        if failed and f.get("ssh") and not restarted:
            steps.append(step("pgpool.check", f"pgpool -n on {host} shows the configuration "
                                              f"error", host=host))
            steps.append(manual(f"fix the error pgpool.check shows in {host}'s pgpool.conf, "
                                f"then run db.recover again", conditional=True))
        for x in failed:
            steps.append(step("hb.cleanup", f"clear the failed {x.get('operation')} of "
                                            f"{x.get('resource')} on {host}",
                              resource=x.get("resource"), node=host))
        if not failed:
            # no Failed action (yet): Pacemaker's monitor has not noticed; it restarts pgpool
            steps.append(wait(f"{group} started and pgpool answering",
                              "wait for Pacemaker to notice and for pgpool to answer "
                              "(else a Failed action shows what to fix)"))
    elif pattern == "postgres":
        steps.append(step("pg.start", f"start PostgreSQL on {host} and verify a direct "
                                      f"connection (else read its log)", host=host))
    return steps


def db_secondary_steps(facts, problems, host):
    """Steps for the lower-ranked problems that need their own (another host's stack or
    PostgreSQL)."""
    hosts = facts["hosts"]
    steps = []
    for pat, h, _ in problems[1:]:
        if pat == "heartbeat" and h != host and h in hosts and hosts[h].get("ssh"):
            steps.append(step("hb.start", f"start the cluster stack on {h}", host=h))
        if pat == "postgres" and h != host:
            steps.append(step("pg.start", f"start PostgreSQL on {h}", host=h))
    return steps


def db_resync_target(problems, pattern, host, pending):
    """The backend whose data is replaced: the failed host, else the degenerated one, else
    the one a pending diagnosis named."""
    degenerated = [p[1] for p in problems if p[0] == "degenerated"]
    target = host
    if pattern not in RESYNC_PATTERNS and degenerated:
        target = degenerated[0]
    if target is None and pending:
        target = pending.get("host")
    return target


def db_plan(facts, problems, pending):
    """The diagnosis of a DB cluster with PROBLEMS (ranked) or a PENDING resync."""
    group = facts.get("group")
    if problems:
        pattern, host = problems[0][0], problems[0][1]
    else:
        pattern, host = pending["pattern"], pending.get("host")
    evidence = merged_evidence(problems)
    if not problems and pending:
        evidence.append(f"no resync since the {pending['pattern']} failure of "
                        f"{pending.get('host')} diagnosed at {pending.get('ts')}: the backends "
                        f"may differ")
    steps = db_repair_steps(facts, pattern, host)
    steps += db_secondary_steps(facts, problems, host)
    source = None
    if pattern in RESYNC_PATTERNS or any(p[0] == "degenerated" for p in problems) or pending:
        target = db_resync_target(problems, pattern, host, pending)
        source, target, src_ev, forced = resync_source(facts, target)
        evidence.extend(src_ev)
        steps.append(step("sync.resync", f"copy the newest data from {source} onto {target} "
                                         f"(5.2.2.2 f)", source=source, target=target,
                          method=facts.get("method") or "dump", force=forced))
        if pattern == "degenerated" and host != target:
            host = target
    back = facts.get("failback_to")
    if back:
        steps.append(step("db.failback", f"move {group} back to {back} (optional, --failback)",
                          to=back))
    else:
        steps.append(step("db.failback", f"optional: move {group} back to {host} "
                                         f"(db.recover --failback)", conditional=True, to=host))
        steps[-1]["label"] = "optional:"
    return result(pattern, host, evidence, steps, source, problems)


def diagnose_db(facts):
    """Pure: facts collected from a DB cluster -> {"pattern", "host", "evidence", "plan",
    "steps", "source", "problems"}.

    The pattern is the first of DB_PATTERNS that holds (table 5-4), or "healthy". The plan
    lists every step of its recovery; recover runs the first non-conditional step, collects
    the facts again and decides anew.
    """
    problems = rank(detect_db(facts), DB_PATTERNS)
    pending = facts.get("pending")
    if not problems and not pending:
        return db_healthy(facts)
    return db_plan(facts, problems, pending)


def resync_source(facts, target):
    """(source, target, evidence lines, forced) for a resync of the failed host TARGET.

    The source is, by priority: the first degenerated view recorded since the backends were
    last in sync, the one written down when the failure was diagnosed (journal), pgpool's
    current view, the other host. When pgpool now names another backend as the newest, that
    view came from a pgpool restarted with a stale status file (split brain): it is reported
    as a contradiction, and forced is True (sync.resync refuses a contradicted source without
    --force)."""
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


def journal_facts(records, cluster, kind="db"):
    """Pure: from the journal's records of CLUSTER -> {"pending", "first_degenerated"}.

    pending: the first failure diagnosis that needs a resync and was not followed by a
    resync (sync.resync, pgpool.recover), a successful recover or an ``equal`` record. first_degenerated: the
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
        elif ev == "equal":  # both backends proven equal since: they do not differ
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


# =========================================================================== LB


def parse_policy(constraints_xml, defaults_xml, group):
    """Pure: CIB constraints + rsc_defaults -> {"preferred", "score", "stickiness", "automatic"}.

    automatic: the group returns to its preferred node by itself (location score above the
    resource stickiness), as the runbook's LB cluster does; the DB cluster must not."""
    preferred, score = None, None
    try:
        root = ET.fromstring(constraints_xml) if constraints_xml.strip() else None
    except ET.ParseError:
        root = None
    if root is not None:
        for loc in root.iter("rsc_location"):
            if loc.get("rsc") != group or not loc.get("node"):
                continue
            raw = loc.get("score", "0")
            value = 1000000 if raw.upper() in ("INFINITY", "+INFINITY") else \
                (-1000000 if raw.upper() == "-INFINITY" else int(raw))
            if value > 0 and (score is None or value > score):
                preferred, score = loc.get("node"), value
    stickiness = 0
    try:
        root = ET.fromstring(defaults_xml) if defaults_xml.strip() else None
    except ET.ParseError:
        root = None
    if root is not None:
        for nv in root.iter("nvpair"):
            if nv.get("name") == "resource-stickiness":
                raw = nv.get("value", "0")
                stickiness = 1000000 if raw.upper() in ("INFINITY", "+INFINITY") else int(raw)
    return {"preferred": preferred, "score": score, "stickiness": stickiness,
            "automatic": preferred is not None and score > stickiness}


def lb_failed_problems(facts):
    """Every Failed action of the LB group is an httpd problem (Apache start or monitor)."""
    found = []
    for f in failed_actions(facts):
        what = ("httpd start failure" if f.get("operation") == "start" else
                f"{f.get('resource')} {f.get('operation')} failure")
        found.append(("httpd", f.get("node"),
                      [f"{_failed_line(f)} {f.get('reason') or ''}: {what}".rstrip()]))
    return found


def detect_lb(facts):
    """Every problem of an LB cluster, in detection order."""
    problems = unreachable_problems(facts)
    problems += lb_failed_problems(facts)
    for viewer, node in standby_nodes(facts):
        if not any(p[1] == node for p in problems):
            problems.append(("heartbeat", node, [f"{viewer} sees {node} in standby (after "
                                                 f"lb.failover? lb.failback brings it back)"]))
    web_ = facts.get("web") or {}
    gnode = agreed_group_node(facts)
    if views(facts) and gnode and not web_.get("serving") and not problems:
        problems.append(("httpd", gnode, [f"{facts.get('group')} runs on {gnode} but the VIP "
                                          f"serves no page "
                                          f"(HTTP {web_.get('http_code') or 'no answer'})"]))
    return problems


def lb_healthy(facts):
    """The healthy diagnosis; a wait step while the automatic failback is still due."""
    group, policy, web_ = facts.get("group"), facts.get("policy") or {}, facts.get("web") or {}
    gnode = agreed_group_node(facts)
    pref = policy.get("preferred")
    evidence = [f"{', '.join(f'{n} online' for n in facts['order'])}; {group} started on {gnode}",
                f"the VIP serves HTTP {web_.get('http_code')} from "
                f"{web_.get('page_node') or '?'}"]
    steps = []
    if pref and policy.get("automatic") and gnode != pref:
        steps.append(wait(f"{group} back on {pref} (automatic failback)",
                          f"the group should come back to {pref} by itself", node=pref))
    return result("healthy", None, evidence, steps, None, [])


def lb_repair_steps(facts, pattern, host):
    """The steps that repair the top-ranked PATTERN on HOST (table 5-2)."""
    group, rid = facts.get("group"), facts.get("apache_resource")
    f = facts["hosts"].get(host) or {}
    steps = []
    if pattern == "power":
        steps.append(manual(f"power on {host} and confirm its OS boots (runbook 5.1.2 a); "
                            f"then run lb.recover again"))
        steps.append(step("hb.start", f"start the cluster stack on {host} if it did not "
                                      f"start at boot", conditional=True, host=host))
    elif pattern == "network":
        if not f.get("ssh"):
            steps.append(manual(f"restore {host}'s network: cables, switch ports, firewall; "
                                f"both LB nodes must ping each other (runbook 5.1.2 b); then "
                                f"run lb.recover again"))
        else:
            steps.append(manual("restore the cluster interconnect between the LB nodes; "
                                "then run lb.recover again"))
            steps[-1]["settle"] = SETTLE
        steps.append(step("hb.start", f"start the cluster stack on {host} if it stopped",
                          conditional=True, host=host))
    elif pattern == "heartbeat":
        if "standby" in [v["nodes"].get(host) for v in views(facts).values()] and f.get("crm"):
            steps.append(step("lb.failback", f"{host} is in standby: bring it online", to=host))
        else:
            steps.append(step("hb.start", f"start the cluster stack on {host} and wait for "
                                          f"online (else read hb.log --host {host})", host=host))
    elif pattern == "httpd":
        failed = [x for x in failed_actions(facts) if x.get("node") == host]
        if failed and f.get("ssh"):
            steps.append(step("web.check", f"apachectl -t on {host} shows the configuration "
                                           f"error", host=host))
            steps.append(manual(f"fix the error web.check shows in {host}'s Apache "
                                f"configuration, then run lb.recover again", conditional=True))
        if not failed:
            # no Failed action (yet): Pacemaker's monitor has not noticed; it restarts Apache
            steps.append(wait(f"{group} started and the VIP serving",
                              "wait for Pacemaker to notice and the VIP to serve "
                              "(else a Failed action shows what to fix)", node=None))
        for x in failed:
            steps.append(step("hb.cleanup", f"clear the failed {x.get('operation')} of "
                                            f"{x.get('resource')} on {host}",
                              resource=x.get("resource") or rid, node=host))
    return steps


def diagnose_lb(facts):
    """Pure: facts of an LB cluster -> {"pattern", "host", "evidence", "plan", "steps", ...}."""
    problems = rank(detect_lb(facts), LB_PATTERNS)
    if not problems:
        return lb_healthy(facts)
    group, policy = facts.get("group"), facts.get("policy") or {}
    pref = policy.get("preferred")
    pattern, host = problems[0][0], problems[0][1]
    evidence = merged_evidence(problems)
    if pref:
        evidence.append(f"failback: {group} prefers {pref} (score {policy.get('score')}, "
                        f"stickiness {policy.get('stickiness')}): "
                        + ("it comes back by itself" if policy.get("automatic")
                           else "NO automatic failback configured"))
    steps = lb_repair_steps(facts, pattern, host)
    if pref and policy.get("automatic"):
        steps.append(wait(f"{group} back on {pref} (automatic failback)",
                          f"verify {group} came back to {pref} by itself", conditional=True,
                          node=pref))
    return result(pattern, host, evidence, steps, None, problems)
