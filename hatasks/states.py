"""Diagnoses of the states hatasks or an operator leaves behind, on top of table 5-4's ten.

Pure, like ``rules``: the facts ``db.collect_db`` read once (every node's crm_mon view with the
cluster's flags, node flags and resources; the move/ban constraints of the CIB; pgpool; each
PostgreSQL with its port and data directory; the journal: an interrupted resync, the lock) in,
one diagnosis out. ``rules.detect_db`` finds the runbook's patterns; this module adds:

- ``maintenance``: cluster maintenance-mode, a node in maintenance, or a resource in
  maintenance that pgpool.stop did not put there: a human's decision (exit 3 with the words);
- ``no-quorum``: a view without quorum (Pacemaker stops resources by policy): a human;
- ``blocked``: a resource BLOCKED after a failed stop: hb.cleanup once it is known stopped;
- ``resync-interrupted``: the journal's latest resync has no end, or failed: sync.resume
  (sync.rollback is the alternative; both say what they do);
- ``resync-overtaken``: the same, but pgpool now serves from its target alone (the source
  went down) before the target's data was moved aside: clients wrote to the target, and a
  resume would rebuild it from the source without those writes: sync.rollback only, then the
  next diagnosis resyncs the other way (with its proof);
- ``standby-left``: a node left in standby while no operation runs: hb.online;
- ``constraint-left``: cli-prefer-*/cli-ban-* left by a move/ban: hb.clear;
- ``pgpool-stopped``: the pgpool resource unmanaged/in maintenance or disabled and pgpool not
  answering (pgpool.stop, an interrupted step): pgpool.start, the way hatasks hands it back;
- ``no-backend``: pgpool runs but accepts no connection: every backend is down in its view
  (e.g. pg.stop --force of the last attached one); it never re-reads them by itself: start the
  PostgreSQL that is down, then restart pgpool (pgpool.stop, pgpool.start);
- ``stale-attach``: both backends attached, but their contents differ after a degenerated
  record no resync settled (an attach without a resync): a resync from the newest;
- ``maintenance-port``: PostgreSQL runs on another port than pg_port (a resync's bulk load):
  pg.stop, then it is started on its port;
- ``host-key``: ssh refuses a host because its key does not match known_hosts (or is
  unknown): never a service or network failure; a human checks the fingerprint;
- ``joining``: a node seen pending (joining the membership): given time, not a cut network.

While another process holds the cluster's lock the diagnosis is ``in-progress``: the problems
are listed, the plan held back ("operation X by Y since T in progress").
"""

from hatasks import rules
from hatasks.rules import manual, step

#: every DB pattern in the order a diagnosis names it when several hold
DB_ORDER = ("node-ids", "split-brain", "host-key", "fenced", "power", "network", "heartbeat",
            "joining",
            "maintenance", "no-quorum", "blocked",
            "resync-overtaken", "resync-interrupted", "standby-left", "constraint-left", "pgpool-stopped",
            "no-backend", "pgpool",
            "postgres", "maintenance-port", "degenerated", "stale-attach")
#: the patterns that need a human: recover exits 3 at once with the words
HUMAN = ("node-ids", "host-key", "maintenance", "no-quorum")


# =========================================================================== journal facts


#: a later success of one of these settles an interrupted resync (the backends were rebuilt)
SETTLES = ("sync.resync", "pgpool.recover", "sync.rollback", "sync.cleanup")


def resync_facts(state, records=()):
    """Pure: syncplan.resume_state's dict -> the interrupted resync (None when the latest one
    finished, was rolled back or cleaned up, was settled later by another successful resync
    or online recovery (RECORDS: the journal), or there is none)."""
    if not state or state.get("finished") or state.get("rolled_back") or state.get("cleaned"):
        return None
    records = list(records)
    last = max((i for i, r in enumerate(records) if r.get("op") == state.get("op")), default=-1)
    if any(r.get("event") == "done" and r.get("action") in SETTLES
           and r.get("op") != state.get("op") for r in records[last + 1:]):
        return None
    p = state.get("params") or {}
    done = list(state.get("done") or [])
    return {"op": state.get("op"), "method": p.get("method"), "source": p.get("source"),
            "target": p.get("target"), "maint_port": p.get("maint_port"), "done": done,
            "last": done[-1] if done else None, "outcome": state.get("outcome") or "interrupted",
            "message": state.get("message"), "resumable": bool(p),
            "pgdata": p.get("pgdata"), "kept_list_len": p.get("kept_list_len")}


def home_from_journal(records, cluster):
    """Pure: the node the last db.failover (or db.maintenance's failover) moved the group from."""
    for r in reversed(records):
        if r.get("cluster") == cluster and r.get("event") == "start" and \
                r.get("action") == "db.failover" and (r.get("args") or {}).get("from"):
            return r["args"]["from"]
    return None


# =========================================================================== detection


def _view_items(facts):
    return list(rules.views(facts).items())


def maintenance_problems(facts):
    found, seen = [], set()
    pool_rid = facts.get("pgpool_resource")
    for viewer, v in _view_items(facts):
        if (v.get("flags") or {}).get("maintenance_mode") and "cluster" not in seen:
            seen.add("cluster")
            found.append(("maintenance", None, [
                f"{viewer}: cluster maintenance-mode is on: Pacemaker neither starts, stops nor "
                f"monitors any resource"]))
        for node, fl in (v.get("node_flags") or {}).items():
            if fl.get("maintenance") and node not in seen:
                seen.add(node)
                found.append(("maintenance", node, [f"{viewer} sees node {node} in maintenance: "
                                                    f"Pacemaker leaves its resources alone"]))
        for r in v.get("resources", []):
            if r.get("maintenance") and r["id"] not in seen and not (
                    (v.get("flags") or {}).get("maintenance_mode")):
                if r["id"] == pool_rid:
                    continue  # pgpool.stop's own maintenance: pgpool-stopped
                seen.add(r["id"])
                found.append(("maintenance", None, [f"{viewer}: resource {r['id']} is in "
                                                    f"maintenance (meta maintenance=true)"]))
    return found


def stack_down_peers(facts, viewer):
    """The nodes other than VIEWER that answer ssh while their own crm_mon fails (their stack
    is down: the heartbeat pattern, which the plan repairs with hb.start)."""
    hosts = facts.get("hosts") or {}
    return [n for n in facts.get("order") or [] if n != viewer
            and rules.stack_down(hosts.get(n) or {})]


def quorum_problems(facts):
    found = []
    for viewer, v in _view_items(facts):
        if (v.get("flags") or {}).get("quorum") is False:
            found.append(("no-quorum", viewer, [f"{viewer}'s partition has no quorum: Pacemaker "
                                                f"stops resources there by policy"]))
    return found


def blocked_problems(facts):
    found, seen = [], set()
    for viewer, v in _view_items(facts):
        for r in v.get("resources", []):
            if r.get("blocked") and r["id"] not in seen:
                seen.add(r["id"])
                where = ", ".join(r.get("nodes") or []) or r.get("node") or "?"
                found.append(("blocked", where.split(",")[0], [
                    f"{viewer}: resource {r['id']} is BLOCKED on {where} (a stop failed and "
                    f"there is no fencing to make it safe): Pacemaker will not touch it"]))
    return found


def resync_problems(facts):
    rs = facts.get("resync")
    if not rs:
        return []
    ev = [f"journal: sync.resync {rs['op']} ({rs.get('method')} {rs.get('source')} -> "
          f"{rs.get('target')}) {rs['outcome']} after step "
          f"{rs.get('last') or '(none)'}: {rs.get('message') or 'no end record'}"]
    if rs.get("overtaken"):
        return [("resync-overtaken", rs.get("target"), ev + [rs["overtaken"]])]
    return [("resync-interrupted", rs.get("target"), ev)]


def standby_problems(facts):
    found, seen = [], set()
    for viewer, node in rules.standby_nodes(facts):
        if node not in seen:
            seen.add(node)
            why = ("" if facts.get("lock") else
                   " and no operation is running: left by a failover, a maintenance or by hand")
            found.append(("standby-left", node, [f"{viewer} sees {node} in standby{why}"]))
    return found


def constraint_problems(facts):
    return [("constraint-left", c.get("node"), [
        f"CIB: constraint {c['id']} ({'crm_resource --move' if c['kind'] == 'move' else 'crm_resource --ban'}) "
        f"{'pins' if c['kind'] == 'move' else 'keeps'} {c.get('resource')} "
        f"{'on' if c['kind'] == 'move' else 'off'} {c.get('node')} (score {c.get('score')}): "
        f"it overrides the cluster's own placement"]) for c in facts.get("constraints") or []]


def pgpool_resource(facts):
    """The pgpool resource as the views see it (the first view that shows it)."""
    rid = facts.get("pgpool_resource")
    for _, v in _view_items(facts):
        for r in v.get("resources", []):
            if r.get("id") == rid:
                return r
    return None


def group_members_node(facts, rid):
    """The one node where the group's other members (the VIP) run while RID is stopped, or
    None: pgpool is started there (the group moves as one; its last node may be gone)."""
    spots = {r.get("node") for _, v in _view_items(facts) for r in v.get("resources", [])
             if r.get("id") != rid and r.get("role") == "Started" and r.get("node")}
    return spots.pop() if len(spots) == 1 else None


def pgpool_stopped_problems(facts):
    pool = facts.get("pgpool") or {}
    r = pgpool_resource(facts)
    if r is None or pool.get("reachable"):
        return []
    if any((v.get("flags") or {}).get("maintenance_mode") for _, v in _view_items(facts)):
        return []
    why = []
    if r.get("maintenance"):
        why.append("in maintenance (pgpool.stop puts it there)")
    elif not r.get("managed", True):
        why.append("unmanaged")
    if str(r.get("target_role") or "").lower() == "stopped":
        why.append("disabled (target-role Stopped)")
    if not why:
        return []
    gnode = rules.agreed_group_node(facts) or group_members_node(facts, r["id"])
    host = gnode or r.get("node") or (facts.get("order") or [None])[0]
    return [("pgpool-stopped", host, [
        f"pgpool resource {r['id']} is {' and '.join(why)}, role {r.get('role')}, and pgpool "
        f"does not answer ({pool.get('error')}): nothing will start it by itself"])]


NOT_ACCEPTING = "not accepting any new connections"


def no_backend_problems(facts):
    pool = facts.get("pgpool") or {}
    if pool.get("reachable") or NOT_ACCEPTING not in (pool.get("error") or ""):
        return []
    gnode = rules.agreed_group_node(facts)
    down = [n for n in facts["order"]
            if not ((facts["hosts"].get(n) or {}).get("pg") or {}).get("running")]
    return [("no-backend", gnode, [
        f"pgpool on {gnode} runs but says it is not accepting any new connections: every "
        f"backend is down in its view (PostgreSQL down on {', '.join(down) or 'no host now'}); "
        f"pgpool does not take a backend back by itself"])]


def maintenance_port_problems(facts):
    found = []
    for name in facts["order"]:
        p = (facts["hosts"].get(name) or {}).get("pg") or {}
        if p.get("running") and p.get("port") and p.get("pg_port") and p["port"] != p["pg_port"]:
            found.append(("maintenance-port", name, [
                f"PostgreSQL on {name} runs on port {p['port']}, not {p['pg_port']} (a resync's "
                f"bulk-load port): pgpool cannot reach it"]))
    return found


def node_id_problems(facts):
    """pgpool's node ids disagree with the inventory: no decision by node id can be trusted."""
    lines = facts.get("node_ids") or []
    return [("node-ids", None, list(lines))] if lines else []


def split_brain_problems(facts):
    """A rebuild was refused (or done by the operator's choice) because the target held writes
    its source lacked: the salvage file of those writes is not re-applied yet."""
    out = []
    for rec in facts.get("salvage_pending") or []:
        if rec.get("rebuilt"):
            continue  # the operator chose: only the salvage is left (see salvage_notes)
        tables = [f"{t.get('table')} ({t.get('target_only', t.get('rows', '?'))} rows)"
                  for t in ((rec.get("proof") or {}).get("tables") or [])[:3]
                  if isinstance(t, dict)]
        out.append(("split-brain", rec.get("backend"), [
            f"{rec.get('backend')} holds writes {rec.get('source')} lacks (proved at "
            f"{rec.get('ts')}): they are kept in the salvage file {rec.get('local')}"
            + (f"; tables: {', '.join(tables)}" if tables else "")]))
    return out


def forced_attach_problems(facts):
    """Backends attached with pgpool.attach --force (journal) and never proved equal since."""
    cont = facts.get("contents") or {}
    out = []
    for host in facts.get("stale_attached") or []:
        why = "; ".join(cont.get("differences") or []) if cont and not cont.get("equal") else ""
        out.append(("stale-attach", host, [
            f"{host} was attached with pgpool.attach --force (without a resync) and no "
            f"comparison has proved it equal since" + (f": {why}" if why else "")]))
    return out


def stale_attach_problems(facts):
    forced = forced_attach_problems(facts)
    if forced:
        return forced
    cont = facts.get("contents")
    first = facts.get("first_degenerated") or {}
    if not cont or cont.get("equal") or not first.get("newest"):
        return []
    newest = first["newest"]
    stale = [h for h in facts["order"] if h != newest]
    return [("stale-attach", stale[0] if stale else None, [
        f"pgpool shows both backends attached, but their contents differ "
        f"({'; '.join(cont.get('differences') or []) or 'row counts'}): attached without a "
        f"resync since {newest} alone took the writes ({first.get('ts')})"])]


def joining(facts):
    """Nodes a view shows pending (joining the membership)."""
    return sorted({node for _, v in _view_items(facts)
                   for node, fl in (v.get("node_flags") or {}).items() if fl.get("pending")})


def host_key(facts, problems):
    """PROBLEMS with an unreachable host whose ssh failed on its host key renamed host-key."""
    out = []
    for pat, host, ev in problems:
        err = ((facts["hosts"].get(host) or {}).get("ssh_error") or "")
        if pat in ("power", "network") and "host key" in err:
            out.append(("host-key", host, [f"ssh to {host} refused: {err}: this says nothing "
                                           f"about its services or its network"]))
        else:
            out.append((pat, host, ev))
    return out


def last_fencing(facts, host):
    """The latest event of the fencing history (facts["fencing"]) that targets HOST, or None."""
    events = [e for e in ((facts.get("fencing") or {}).get("events") or [])
              if e.get("target") == host]
    return max(events, key=lambda e: e.get("completed") or "") if events else None


def fenced(facts, problems):
    """PROBLEMS with an unreachable host (power or network) renamed fenced when the cluster's
    fencing history says it fenced that host last (a success) and its power is not known on."""
    out = []
    for pat, host, ev in problems:
        last = last_fencing(facts, host) if pat in ("power", "network") else None
        if (last and last.get("status") == "success"
                and (facts["hosts"].get(host) or {}).get("power") != "on"):
            by = last.get("delegate") or last.get("origin") or "?"
            out.append(("fenced", host, ev + [
                f"fencing history: {host} fenced ({last.get('action')}) by {by} at "
                f"{last.get('completed') or '?'}, asked by {last.get('origin') or '?'} "
                f"({last.get('client') or 'the cluster'})"]))
        else:
            out.append((pat, host, ev))
    return out


def detect(facts):
    """Every problem of a DB cluster: the runbook's (rules.detect_db), some renamed for what
    they are, plus the states above."""
    old = rules.detect_db(facts)
    pend = joining(facts)
    new = []
    for pat, host, ev in fenced(facts, host_key(facts, old)):
        if pat == "heartbeat" and ev and " in standby" in ev[0]:
            continue  # standby-left below
        if pat == "network" and pend and any("each sees the other OFFLINE" in e for e in ev):
            new.append(("joining", host, [f"{', '.join(pend)} is joining the cluster (pending): "
                                          f"the membership is still forming, not a cut network"]))
            continue
        new.append((pat, host, ev))
    stopped = pgpool_stopped_problems(facts) or no_backend_problems(facts)
    if stopped:
        new = [p for p in new if p[0] != "pgpool" or any("Failed actions" in e for e in p[2])]
    rs = facts.get("resync")
    mport = [] if rs else maintenance_port_problems(facts)
    if mport:
        busy = {p[1] for p in mport}
        new = [p for p in new if not (p[0] == "postgres" and p[1] in busy)]
    if rs:  # the resync's own states are its business: resume or roll back
        new = [p for p in new if not (p[0] == "postgres" and p[1] == rs.get("target"))]
    new += maintenance_problems(facts) + quorum_problems(facts) + blocked_problems(facts)
    new += resync_problems(facts) + standby_problems(facts) + constraint_problems(facts)
    new += stopped + mport + stale_attach_problems(facts)
    new += node_id_problems(facts) + split_brain_problems(facts)
    return rules.rank(new, DB_ORDER)


# =========================================================================== planning


def proof_refused(facts, rs):
    """The interrupted resync RS ended because its proof refused (split brain): (the salvage
    file of its target's writes, True) when journaled, (words, False) when only the resync's
    end message says so, else None."""
    for rec in facts.get("salvage_pending") or []:
        if not rec.get("rebuilt") and {rec.get("backend"), rec.get("source")} == \
                {rs.get("source"), rs.get("target")}:
            return rec.get("local"), True
    if (rs.get("message") or "").startswith("split brain: refusing"):
        return "named in the resync's output; not journaled", False
    return None


def steps_for(facts, pattern, host):
    """The steps of one new-state PATTERN on HOST."""
    out = []
    if pattern == "fenced":
        devices = ((facts.get("fencing") or {}).get("devices") or {}).get(host) or []
        via = (f"its fence device {', '.join(devices)}'s BMC" if devices
               else "its BMC (out-of-band console)")
        out.append(manual(f"{host} was fenced (powered off by the cluster): read why first "
                          f"(inv hb.log on the node that fenced it); then power {host} on "
                          f"through {via}, e.g. `ipmitool -I lanplus -H BMC -U USER chassis "
                          f"power on`, and confirm its OS boots; then run db.recover again"))
        out.extend(rules.started_after_boot(host))
    elif pattern == "host-key":
        out.append(manual(f"{host}'s ssh host key does not match known_hosts (or is unknown): "
                          f"find out why (a reinstalled host? someone else on its address?), "
                          f"check the fingerprint on its console, then update known_hosts "
                          f"yourself; then run recover again"))
    elif pattern == "maintenance":
        if host:
            out.append(manual(f"node {host} is in maintenance: someone put it there on purpose. "
                              f"When their work is done: inv hb.maintenance --off --node {host}; "
                              f"then run recover again"))
        else:
            out.append(manual("the cluster (or a resource) is in maintenance: someone put it "
                              "there on purpose. When their work is done: inv hb.maintenance "
                              "--off; then run recover again"))
    elif pattern == "no-quorum":
        if not stack_down_peers(facts, host):
            out.append(manual(f"{host}'s partition has no quorum: bring the other node (or the "
                              f"interconnect) back; never override quorum without fencing; then "
                              f"run {facts.get('kind') or 'db'}.recover again"))
        # else: the peer answers ssh with its stack down (heartbeat): the plan's hb.start of
        # it brings the quorum back (chaos seed 11 step 40); nothing for a human here
    elif pattern == "joining":
        out.append(manual(f"{host} is joining the cluster: wait for it to show online "
                          f"(hb.status); then run db.recover again"))
        out[-1]["settle"] = rules.SETTLE
    elif pattern == "blocked":
        rid = next((r["id"] for _, v in _view_items(facts) for r in v.get("resources", [])
                    if r.get("blocked")), None)
        out.append(step("hb.cleanup", f"{rid} is blocked after a failed stop on {host}: clear "
                                      f"it so Pacemaker probes where it really runs",
                        resource=rid, node=host))
    elif pattern == "resync-overtaken":
        rs = facts.get("resync") or {}
        out.append(step("sync.rollback", f"end the {rs.get('method')} resync of "
                                         f"{rs.get('target')} from {rs.get('source')} without "
                                         f"rebuilding {rs.get('target')}: it took writes since "
                                         f"(never sync.resume); then run db.recover again",
                        conditional=False))
    elif pattern == "resync-interrupted":
        rs = facts.get("resync") or {}
        refused = proof_refused(facts, rs)
        if rs.get("resumable") and refused:
            # the resync's proof found writes on the target its source lacks (exit 3, salvage
            # file written): a resume proves again and refuses again until the operator chooses
            src, tgt = rs.get("source"), rs.get("target")
            # with a journaled salvage file, split-brain plans the sync.resync step that
            # db.recover --source runs; without one, the operator runs the resync directly
            how = (f"inv db.recover --source {src} (rebuild {tgt} from {src}) or --source {tgt} "
                   f"(rebuild {src} from {tgt}), or sync.resync --source ..." if refused[1] else
                   f"inv sync.resync --source {src} --target {tgt} --force, or --source {tgt} "
                   f"--target {src} --force")
            out.append(manual(f"the {rs.get('method')} resync {src} -> {tgt} was refused by its "
                              f"proof: {tgt} holds writes {src} lacks (salvage file "
                              f"{refused[0]}); sync.resume would refuse again. Choose the "
                              f"winner: {how}; then re-apply the loser's writes: inv "
                              f"sync.salvage --file FILE --yes (the loser's salvage file)"))
            alt = step("sync.rollback", f"instead: end the resync as it is ({tgt}'s data "
                                        f"stays as it was) and choose later", conditional=True)
        elif rs.get("resumable"):
            out.append(step("sync.resume", f"continue the {rs.get('method')} resync of "
                                           f"{rs.get('target')} from {rs.get('source')} after "
                                           f"its last completed step "
                                           f"({rs.get('last') or 'none'}); pgpool stays stopped "
                                           f"until it ends"))
            alt = step("sync.rollback", f"instead: put {rs.get('target')}'s old data "
                                        f"directory back, restart it on its port and start "
                                        "pgpool as before the resync", conditional=True)
        else:
            alt = step("sync.rollback", "the resync stopped before its plan was journaled: "
                                        "undo what it did", conditional=False)
        alt["label"] = "or:" if alt.get("conditional") else None
        out.append(alt)
    elif pattern == "standby-left":
        out.append(step("hb.online", f"{host} was left in standby: bring it online", node=host))
    elif pattern == "constraint-left":
        extra = {"cluster": facts["cluster"]} if facts.get("kind") == "lb" else {}
        for c in facts.get("constraints") or []:
            if c.get("node") == host:
                out.append(step("hb.clear", f"remove {c['id']} (left by a move/ban) so the "
                                            f"cluster places {c['resource']} itself",
                                resource=c["resource"], **extra))
    elif pattern == "pgpool-stopped":
        out.append(step("pgpool.start", f"hand pgpool back to Pacemaker on {host} (the way "
                                        f"pgpool.stop took it) and verify it answers",
                        host=host))
    elif pattern == "no-backend":
        for n in facts["order"]:
            p = (facts["hosts"].get(n) or {}).get("pg") or {}
            if facts["hosts"][n].get("ssh") and not p.get("running") and p.get("datadir", True):
                out.append(step("pg.start", f"start PostgreSQL on {n} (pgpool has no backend)",
                                host=n))
        out.append(step("pgpool.stop", f"pgpool on {host} keeps every backend down: stop it "
                                       f"(the newest-data backend is recorded first), then it "
                                       f"is started again and reads the backends afresh",
                        host=host))
    elif pattern == "node-ids":
        out.append(manual("pgpool's node ids and the inventory's pgpool_node_id disagree ("
                          + "; ".join(facts.get("node_ids") or []) + "): fix pgpool_node_id in "
                          "the inventory (pgpool is the truth: SHOW pool_nodes); then run "
                          "db.recover again"))
    elif pattern == "split-brain":
        rec = next((r for r in facts.get("salvage_pending") or [] if r.get("backend") == host
                    and not r.get("rebuilt")), {})
        # the resync step asks for the operator's choice (db.recover --source): without it,
        # recover stops there with the words; the loser's writes stay in the salvage file
        out.append(step("sync.resync", f"both sides took writes (split brain): rebuild the "
                                       f"loser from the winner you choose with --source, then "
                                       f"re-apply the loser's writes: inv sync.salvage --file "
                                       f"{rec.get('local')} --yes", source=rec.get("source"),
                        target=host, force=True, method=facts.get("method") or "dump"))
        out[-1]["hidden"] = {"salvage": rec.get("local")}
    elif pattern == "stale-attach":
        newest = (facts.get("first_degenerated") or {}).get("newest")
        if not newest or newest == host:
            newest = next((h for h in facts["order"] if h != host), None)
        out.append(step("sync.resync", f"rebuild {host} from {newest}, which took the writes "
                                       f"while {host} was detached (its stale contents are "
                                       f"kept, never deleted)", source=newest, target=host,
                        method=facts.get("method") or "dump"))
    elif pattern == "maintenance-port":
        out.append(step("pg.stop", f"stop PostgreSQL on {host} (on the wrong port); it is then "
                                   f"started on its own port", host=host))
    return out


NEW = set(DB_ORDER) - set(rules.DB_PATTERNS)


def lock_result(facts, problems):
    lock = facts["lock"]
    line = (f"operation {lock.get('action')} by {lock.get('user')} (pid {lock.get('pid')} on "
            f"{lock.get('host')}) since {lock.get('since')} in progress: what is seen may be its "
            f"own intermediate state; no plan until it ends")
    return rules.result("in-progress", None, [line] + rules.merged_evidence(problems), [], None,
                        problems)


def salvage_notes(facts):
    """Salvage files whose loser was rebuilt but whose writes are not re-applied yet: not a
    fault of the cluster (both backends agree), an operator's to-do that must not be lost."""
    return [f"the salvage file {r.get('local')} of {r.get('backend')}'s writes (split brain at "
            f"{r.get('ts')}) is not re-applied yet: inv sync.salvage --file {r.get('local')} --yes"
            for r in facts.get("salvage_pending") or [] if r.get("rebuilt")]


def diagnose_db(facts):
    """Pure: facts -> the diagnosis dict (rules.result) over every pattern of DB_ORDER, with
    the pending salvage files noted."""
    d = _diagnose_db(facts)
    notes = salvage_notes(facts)
    if notes:
        d["evidence"] = list(d.get("evidence") or []) + notes
        d["salvage"] = notes
    return d


def _diagnose_db(facts):
    problems = detect(facts)
    if facts.get("lock"):
        return lock_result(facts, problems)
    old = [p for p in problems if p[0] not in NEW]
    new = [p for p in problems if p[0] in NEW]
    home = facts.get("home")
    if not new:
        d = rules.diagnose_db(dict(facts)) if not old else rules.db_plan(
            facts, old, facts.get("pending"))
        if not old and facts.get("pending"):
            # only the resync a past failure left owed: its cause is gone (nothing detected
            # now), so no manual step of that failure is asked again
            d["steps"] = [x for x in d["steps"] if x["task"] != "manual"]
            d["plan"] = [rules.render(x) for x in d["steps"]]
        d = _home_failback(d, home, rules.agreed_group_node(facts))
        d["impact"] = impact(facts, d["steps"])
        return d
    top = problems[0]
    steps = []
    done = set()
    for pat, host, _ in problems:
        if pat in NEW and (pat, host) not in done:
            done.add((pat, host))
            steps += steps_for(facts, pat, host)
    if old:
        base = rules.db_plan(facts, old, facts.get("pending"))
        keys = {(s["task"], tuple(sorted(s["args"].items()))) for s in steps}
        steps += [s for s in base["steps"]
                  if (s["task"], tuple(sorted(s["args"].items()))) not in keys]
        source = base["source"]
        evidence = rules.merged_evidence(problems) + [e for e in base["evidence"]
                                                       if e not in rules.merged_evidence(problems)]
    else:
        source, evidence = None, rules.merged_evidence(problems)
    d = rules.result(top[0], top[1], evidence, steps, source, problems)
    d = _home_failback(d, home, rules.agreed_group_node(facts))
    d["impact"] = impact(facts, d["steps"])
    return d


#: a conservative copy rate for the estimate of how long clients are refused (bytes/s)
COPY_RATE = 20 * 1024 * 1024


def impact(facts, steps):
    """What the user will feel, one line per step that stops pgpool (shown before the
    confirmation): clients refused for the copy, an estimate from the data size, and the
    online method when it is available."""
    out = []
    sizes = [(h.get("pg") or {}).get("bytes") for h in facts["hosts"].values()]
    size = max([b for b in sizes if b] or [0])
    for s in steps:
        if s.get("conditional"):
            continue
        if s["task"] == "sync.resync" and s["args"].get("method") != "online":
            est = (f" for about {max(1, round(size / COPY_RATE))} s ({size / 1048576:.0f} MB "
                   f"of data at ~20 MB/s)" if size else " for the whole copy")
            out.append(f"{s['args'].get('method')} resync: pgpool STOPS and clients are refused"
                       f"{est}; `--method online` keeps pgpool serving while "
                       f"{s['args'].get('target')} is rebuilt")
        elif s["task"] == "sync.resume":
            rs = facts.get("resync") or {}
            done = rs.get("done") or []
            if rs.get("method") == "online" or "start_pgpool" in done or "stop_pgpool" not in done:
                # pgpool is not held stopped by this resync (online, started again, or not
                # stopped yet: the resume stops it only for a copy still to make)
                if rs.get("method") != "online" and "stop_pgpool" not in done:
                    out.append("sync.resume: pgpool STOPS and clients are refused until the "
                               "resync's copy is made")
            else:
                out.append("sync.resume: pgpool stays stopped (clients refused) until the "
                           "resync ends")
        elif s["task"] == "pg.stop":
            out.append(f"pg.stop: {s['args'].get('host')}'s PostgreSQL stops (it is not serving "
                       f"through pgpool now)")
    return out


def _home_failback(d, home, gnode=None):
    """The optional failback names the group's home node, not the failed host; none when it
    would name the node the group already runs on."""
    d["steps"] = [s for s in d["steps"] if not (s["task"] == "db.failback" and s.get("conditional")
                                                and (home or s["args"].get("to")) == gnode
                                                and gnode)]
    if not home:  # nowhere known to go back to: no failback step naming nothing
        d["steps"] = [s for s in d["steps"] if not (s["task"] == "db.failback"
                                                    and s.get("conditional")
                                                    and not s["args"].get("to"))]
        d["plan"] = [rules.render(s) for s in d["steps"]]
        return d
    for s in d["steps"]:
        if s["task"] == "db.failback" and s.get("conditional"):
            s["args"]["to"] = home
            s["why"] = f"optional: move the group back to its home node {home} (db.recover --failback)"
    d["plan"] = [rules.render(s) for s in d["steps"]]
    return d


#: the LB patterns in the order a diagnosis names them
LB_ORDER = ("host-key", "power", "network", "heartbeat", "maintenance", "no-quorum", "blocked",
            "constraint-left", "httpd")


def diagnose_lb(facts):
    """Pure: the LB diagnosis (rules.diagnose_lb) plus maintenance, no-quorum, blocked,
    constraint-left and an operation in progress. A standby LB node stays rules' heartbeat
    pattern planned as lb.failback (the LB cluster fails back by itself once it is online)."""
    base = rules.diagnose_lb(facts)
    renamed = host_key(facts, [(p[0], p[1], []) for p in base["problems"]])
    keyed = {p[1] for p in renamed if p[0] == "host-key"}
    if keyed:  # what rules planned for that host (network/power) does not apply
        base["problems"] = [p for p in base["problems"] if p[1] not in keyed]
        base["steps"] = [x for x in base["steps"] if x["task"] != "manual"
                         and (x.get("args") or {}).get("host") not in keyed]
        base["evidence"] = [e for e in base["evidence"]
                            if not any(f"ssh to {h} " in e or f"for {h}:" in e for h in keyed)]
        if not base["problems"]:
            base["pattern"] = "healthy"
    new = [p for p in renamed if p[0] == "host-key"]
    new += maintenance_problems(facts) + quorum_problems(facts) + blocked_problems(facts)
    new += constraint_problems(facts)
    old = [(p[0], p[1], []) for p in base["problems"]]
    if facts.get("lock"):
        return lock_result(facts, new + old)
    if not new:
        return base
    problems = rules.rank(new + old, LB_ORDER)
    steps = []
    for pat, host, _ in problems:
        if pat in NEW:
            steps += steps_for(facts, pat, host)
    steps += [s for s in base["steps"] if s not in steps]
    evidence = rules.merged_evidence(new) + (base["evidence"] if base["pattern"] != "healthy"
                                             else [])
    top = problems[0]
    return rules.result(top[0], top[1], evidence, steps, None, problems)
