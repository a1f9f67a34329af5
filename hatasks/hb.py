"""Pacemaker (Heartbeat's successor): status, standby/online, cleanup, stack start/stop, log.

Runbook: `crm_mon -i 3`, `crm_standby -U n -v true/false`, `crm_resource -H h -r r -C`,
`service heartbeat start/stop/status` and `egrep "(ERROR|FATAL)" ha-log` (sections 5.1, 5.2).
Every mutating task verifies its effect by reading crm_mon again before it returns.
"""

import xml.etree.ElementTree as ET

from hatasks import checks, crm, crmmon, journal, newest, output, parsers, remote, shell, watch
from hatasks.base import helps, task
from hatasks.output import tabulate
from hatasks.errors import HaError, StateError, UnreachableError, UsageError

#: the configured resources (to refuse an unknown one before acting)
CIB_RESOURCES = "cibadmin --query --scope resources"
#: what `hb.log` looks for: the runbook's ERROR/FATAL plus Pacemaker 2's lower-case levels
LOG_PATTERN = r"(ERROR|FATAL|CRIT)|[[:space:]](error|crit|alert|emerg):"


# --------------------------------------------------------------------------- inputs


def cluster_names(inv):
    """Names of the clusters (inventory groups with a cluster_kind) in inventory order."""
    return list(inv.clusters)


def node_of(ctx, name, option="node"):
    """Validate a --node/--host value: (Host, cluster name). Nothing has run yet."""
    host = checks.host(ctx, name, option)
    return host, host.cluster


def failures_of(state, resource, node):
    return [f for f in state.get("failed_actions", [])
            if f.get("node") == node and f.get("resource") == resource]


def groups_of_cluster(ctx, cluster):
    group = remote.inventory(ctx).cluster(cluster).vars.get("group")
    return [group] if group else []


# --------------------------------------------------------------------------- status


def status(ctx, cluster=None):
    """Step: crm_mon of one cluster (or all): {"clusters", "nodes", "resources", "failed_actions"}.

    Items carry a "cluster" field; per-cluster "read_on" (node read) and "dc" are in "views".
    """
    inv = remote.inventory(ctx)
    names = [checks.cluster(ctx, cluster, exact=True).name] if cluster else cluster_names(inv)
    result = {"clusters": names, "nodes": [], "resources": [], "failed_actions": [], "views": {}}
    # every cluster read at once (as `status` does); the first failure in inventory order raises
    states = remote.probe_many(ctx, names, lambda name: crm_status_with_fencing(ctx, name))
    for name in names:
        state = states[name]
        if isinstance(state, HaError):
            raise state
        for key in ("nodes", "resources", "failed_actions"):
            result[key].extend(dict(item, cluster=name) for item in state.get(key, []))
        result["views"][name] = {"read_on": state["read_on"], "dc": state.get("dc"),
                                 "unanswered": state.get("unanswered") or {},
                                 "quorum": state.get("quorum"),
                                 "maintenance_mode": bool(state.get("maintenance_mode")),
                                 "stop_all_resources": bool(state.get("stop_all_resources")),
                                 "stonith_enabled": state.get("stonith_enabled"),
                                 "bans": state.get("bans") or [],
                                 "fencing": state.get("fencing")}
    return result


def status_table(data):
    out = []
    for name in data["clusters"]:
        view = data["views"][name]
        head = f"== cluster {name}  (read on {view['read_on']}"
        if view.get("dc"):
            head += f", DC {view['dc']}"
        out.append(head + ")")
        for host, why in view["unanswered"].items():
            out.append(f"   !! {host} did not answer: {why}")
        flags = [w for w, on in (("MAINTENANCE-MODE ON", view.get("maintenance_mode")),
                                 ("STOP-ALL-RESOURCES ON", view.get("stop_all_resources")),
                                 ("NO QUORUM", view.get("quorum") is False)) if on]
        out.append(f"   quorum {'yes' if view.get('quorum') else 'NO' if view.get('quorum') is False else '?'}"
                   f", stonith {'enabled' if view.get('stonith_enabled') else 'disabled'}"
                   + (f"; !! {'; '.join(flags)}" if flags else ""))
        out.extend(fencing_lines(view.get("fencing")))
        devices = {d["id"] for d in (view.get("fencing") or {}).get("devices") or []}
        for b in view.get("bans") or []:   # a fence device kept off the node it fences is usual
            if b.get("resource") not in devices:
                out.append(f"   !! ban {b.get('id')}: {b.get('resource')} kept off {b.get('node')}")
        nodes = [n for n in data["nodes"] if n["cluster"] == name]
        out.append(tabulate([[n["name"], n["state"].upper() if n["state"] != "online" else "online",
                              ", ".join(k for k in ("maintenance", "unclean", "pending")
                                        if n.get(k)) or "-"]
                             for n in nodes], headers=["node", "state", "flags"]))
        res = [r for r in data["resources"] if r["cluster"] == name]
        out.append("")
        out.append(tabulate([[r.get("group") or "-", r["id"], r.get("role"), r.get("node") or "-",
                              ", ".join(w for w, on in (
                                  ("unmanaged", not r.get("managed", True)),
                                  ("maintenance", r.get("maintenance")),
                                  ("BLOCKED", r.get("blocked")), ("FAILED", r.get("failed")),
                                  ("disabled", crmmon.disabled(r))) if on) or "-"]
                             for r in res], headers=["group", "resource", "role", "node", "flags"]))
        fails = [f for f in data["failed_actions"] if f["cluster"] == name]
        out.append("")
        if fails:
            out.append("FAILED ACTIONS (clear with hb.cleanup --resource R --node N):")
            out.append(tabulate([[f["resource"], f.get("operation"), f["node"], f.get("rc"),
                                  f.get("reason") or ""] for f in fails],
                                headers=["resource", "operation", "node", "rc", "reason"]))
        else:
            out.append("failed actions: none")
        out.append("")
    return "\n".join(out).rstrip()


@task(name="status", optional=["watch_"],
      help=helps(None, {"cluster": "db, lb, any cluster's name, or all (default: every cluster)",
            "format": True, "watch": True}))
def status_task(ctx, cluster=None, format=None, watch_=None):
    """Show nodes, resources and failed actions of the Pacemaker clusters.

    Runbook 5.1.2.1, 5.2.2.1: `crm_mon -i 3` (here `crm_mon -1 --output-as=xml` on the first node
    that answers): each node online / standby / OFFLINE, where each group is Started, and the
    `Failed actions` with node, operation, rc and reason. Exit 3 when a node is OFFLINE.
    """
    fmt = output.resolve_format(ctx, format)
    cluster = None if cluster == "all" else cluster
    every = watch.seconds(watch_)
    if every is not None:
        def frame():
            data = status(ctx, cluster)
            return data, status_table(data)

        watch.loop(frame, every, fmt, "hatasks hb.status")
        return None
    data = status(ctx, cluster)
    output.emit(data, fmt, table=status_table)
    offline = [f"{n['name']} ({n['cluster']})" for n in data["nodes"] if n["state"] == "offline"]
    if offline:
        raise StateError(f"node(s) OFFLINE: {', '.join(offline)}")
    return data


# --------------------------------------------------------------------------- standby / online


def standby(ctx, node, timeout=60, force=False, yes=False, state=None):
    """Put NODE in standby and wait until its resources run on another node (5.1.1 a, 5.2.1).
    STATE: the cluster's state just read by the caller under the same lock (not read again)."""
    host, cluster = node_of(ctx, node)
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    before = state or crm.crm_status(ctx, cluster)
    print(crm.summary(before))
    if crmmon.node_state(before, node) is None:
        raise StateError(f"{node} is not a node of the running {cluster} cluster (crm_mon on "
                         f"{before['read_on']})")
    if crmmon.node_state(before, node) == "offline":
        raise StateError(f"refusing standby of {node}: it is OFFLINE (nothing runs there to move; "
                         f"see hb.status)")
    # a node in maintenance keeps what it runs as it is: not a target
    others = [n for n in crmmon.others_online(before, node)
              if not (crmmon.find_node(before, n) or {}).get("maintenance")]
    if not others and not force:
        kept = [n for n in crmmon.others_online(before, node)
                if (crmmon.find_node(before, n) or {}).get("maintenance")]
        why = (f"{' and '.join(kept)} {'are' if len(kept) > 1 else 'is'} online but in "
               f"maintenance (Pacemaker moves nothing there)" if kept
               else f"no other {cluster} node is online")
        raise StateError(f"refusing standby of {node}: {why}, the service would stop "
                         f"(--force to do it anyway)")
    groups = groups_of_cluster(ctx, cluster)
    moving = sorted({r.get("group") or r["id"] for r in crmmon.running_on(before, node)} | set(
        g for g in groups if crmmon.group_node(before, g) == node))
    args = {"node": node, "timeout": timeout, "force": force}
    command = f"crm_standby -N {shell.q(node)} -v on"

    def converged(state):
        if crmmon.node_state(state, node) != "standby" or crmmon.running_on(state, node):
            return False
        if not others:  # forced: the service stops, nothing to run elsewhere
            return True
        return all(crmmon.group_node(state, g) not in (None, node) for g in moving)

    plan = f"standby {node}" + (f", {', '.join(moving)} moves to {' or '.join(others)}"
                                if moving and others else "")
    with journal.operation(ctx, cluster, "hb.standby", args, yes=yes, summary=plan):
        if crmmon.node_state(before, node) == "standby":
            print(f"{node} is already in standby")
        else:
            crm.run_action(ctx, remote.host(ctx, before["read_on"]), command)
        if remote.is_dry(ctx):
            return before
        where = " and ".join(others) or "nowhere (forced)"
        after = crm.wait_for(ctx, cluster, converged, timeout,
                         f"{node} standby, {', '.join(moving) or 'its resources'} "
                         f"started on {where}",
                         prefer=[before["read_on"]])
    print(crm.summary(after))
    return after


def online(ctx, node, timeout=60, yes=False, state=None):
    """Bring NODE back online from standby and wait until verified (5.1.1, 5.2.1 recovery).
    STATE: the cluster's state just read by the caller under the same lock (not read again)."""
    host, cluster = node_of(ctx, node)
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    before = state or crm.crm_status(ctx, cluster)
    if state is None:
        print(crm.summary(before))
    if crmmon.node_state(before, node) is None:
        raise StateError(f"{node} is not a node of the running {cluster} cluster")
    if crmmon.node_state(before, node) == "offline":
        raise StateError(f"{node} is OFFLINE (cluster stack down or unreachable): use hb.start "
                         f"--host {node}, standby off cannot bring it back")
    groups = groups_of_cluster(ctx, cluster)
    command = f"crm_standby -N {shell.q(node)} -v off"

    def converged(state):
        return crmmon.node_state(state, node) == "online" and all(crmmon.group_node(state, g) for g in groups)

    with journal.operation(ctx, cluster, "hb.online", {"node": node, "timeout": timeout}, yes=yes,
                           summary=f"standby off for {node}"):
        if crmmon.node_state(before, node) == "online":
            print(f"{node} is already online")
        else:
            crm.run_action(ctx, remote.host(ctx, before["read_on"]), command)
        if remote.is_dry(ctx):
            return before
        after = crm.wait_for(ctx, cluster, converged, timeout,
                         f"{node} online and {', '.join(groups) or 'groups'} started",
                         prefer=[before["read_on"]], settle=True, seen=before)
    print(crm.summary(after))
    return after


@task(name="standby",
      help=helps(None, {"node": "inventory host to put in standby (db01, lb02, ...)",
            "timeout": "seconds to wait for the resources to run elsewhere (default 60)",
            "force": "even when no other node is online (stops the service)",
            "yes": True}))
def standby_task(ctx, node, timeout=60, force=False, yes=False):
    """Put a node in standby; return once its resources run on the other node.

    Runbook 5.1.1 (a), 5.2.1 HB failover: `crm_standby -U node -v true`, then crm_mon shows the
    node standby and the group Started on the other node. Refused when no other node is online.
    """
    standby(ctx, node, timeout=timeout, force=force, yes=yes)


@task(name="online", help=helps(None, {"node": "inventory host to bring back online",
            "timeout": "seconds to wait (default 60)",
            "yes": True}))
def online_task(ctx, node, timeout=60, yes=False):
    """Bring a standby node back online; return once crm_mon shows it online and settled.

    Runbook 5.1.1 recovery, 5.2.1, 5.2.2.2 G: `crm_standby -U node -v false`.
    """
    online(ctx, node, timeout=timeout, yes=yes)


# --------------------------------------------------------------------------- cleanup


def known_resources(ctx, cluster, source):
    """Ids of the resources, groups and clones configured in the CIB (read on SOURCE)."""
    res = remote.run(ctx, remote.host(ctx, source), CIB_RESOURCES, probe=True, warn=True)
    try:
        root = ET.fromstring(res.stdout or "") if res.exited == 0 else None
    except ET.ParseError:
        root = None
    if root is None:
        raise StateError(f"cluster {cluster}: cannot read the configured resources on {source} "
                         f"(`{CIB_RESOURCES}` exited {res.exited})")
    return {el.get("id") for tag in ("primitive", "group", "clone", "master", "bundle")
            for el in root.iter(tag) if el.get("id")}


def cleanup(ctx, resource, node, timeout=60, yes=False):
    """Clean up RESOURCE's failure on NODE; wait until the failed action is gone (5.1.2, 5.2.2)."""
    remote.check_value("resource", resource)
    host, cluster = node_of(ctx, node)
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    before = crm.crm_status(ctx, cluster)
    print(crm.summary(before))
    ids = known_resources(ctx, cluster, before["read_on"])
    if resource not in ids:
        raise UsageError(f"unknown resource {resource!r} in the {cluster} cluster "
                         f"(known: {', '.join(sorted(ids))})")
    if not failures_of(before, resource, node):
        print(f"no failed action of {resource} on {node}; "
              "cleaning up anyway (resets its fail count)")
    members = [r["id"] for r in crmmon.group_members(before, resource)] or [resource]
    command = f"crm_resource --cleanup -r {shell.q(resource)} -N {shell.q(node)}"

    def converged(state):
        if any(failures_of(state, r, node) for r in members + [resource]):
            return False
        mine = [r for r in state.get("resources", []) if r["id"] in members]
        return bool(mine) and all(r.get("role") in crmmon.ACTIVE_ROLES for r in mine)

    args = {"resource": resource, "node": node, "timeout": timeout}
    with journal.operation(ctx, cluster, "hb.cleanup", args, yes=yes,
                           summary=f"clean up {resource} on {node}"):
        crm.run_action(ctx, remote.host(ctx, before["read_on"]), command)
        if remote.is_dry(ctx):
            return before
        after = crm.wait_for(ctx, cluster, converged, timeout,
                         f"no failed action of {resource} on {node} and {resource} started",
                         prefer=[before["read_on"]], settle=True)
    print(crm.summary(after))
    return after


@task(name="cleanup", help=helps(None, {"resource": "resource (or group) id, e.g. pgpool, apache",
            "node": "inventory host whose failure to clear",
            "timeout": "seconds to wait (default 60)",
            "yes": True}))
def cleanup_task(ctx, resource, node, timeout=60, yes=False):
    """Clear a resource's failed action on a node; return once it is gone and the resource runs.

    Runbook 5.1.2.2 (d), 5.2.2 pgpool recovery: `crm_resource -H host -r resource -C`
    (now `crm_resource --cleanup -r R -N N`), then `Failed actions` must disappear.
    """
    cleanup(ctx, resource, node, timeout=timeout, yes=yes)


# --------------------------------------------------------------------------- stack start / stop


def _stack_command(host, key):
    command = (host.vars or {}).get(key)
    if not command:
        raise UsageError(f"{host.name}: the inventory sets no {key} (the command that "
                         f"{'starts' if key == 'stack_start' else 'stops'} the cluster stack)")
    return command


def _peers(ctx, cluster, name):
    return [h.name for h in remote.inventory(ctx).cluster(cluster).hosts if h.name != name]


def _stack_down_on(ctx, cluster, host):
    """Why crm_mon fails on HOST itself (its stack is down), or None when it answers there or
    HOST cannot be reached (nothing more to learn than the peer's view)."""
    try:
        crm.crm_status(ctx, cluster, only=[host.name])
    except UnreachableError:
        return None
    except HaError as exc:
        return exc.message
    return None


def start(ctx, host_name, timeout=120, yes=False):
    """Start the cluster stack on HOST; wait until crm_mon shows it online (5.1.2, table 5-4)."""
    host, cluster = node_of(ctx, host_name, option="host")
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    command = _stack_command(host, "stack_start")
    try:
        before = crm.crm_status(ctx, cluster, prefer=_peers(ctx, cluster, host.name))
        print(crm.summary(before))
    except HaError as exc:  # whole cluster down: nothing to read yet
        before = None
        print(f"cluster {cluster}: no node answers crm_mon yet ({exc.message})")
    if before is not None and crmmon.node_state(before, host.name) in ("online", "standby"):
        down_there = _stack_down_on(ctx, cluster, host)
        if down_there is None:
            print(f"{host.name} is already {crmmon.node_state(before, host.name)}: nothing to start")
            return before
        # the peer has not noticed yet (a killed stack is seen offline only after the token
        # timeout): the host's own crm_mon is the proof
        print(f"{before['read_on']} still sees {host.name} {crmmon.node_state(before, host.name)}, "
              f"but crm_mon fails on {host.name} itself ({down_there}): its stack is down")

    def converged(state):
        # read on the host itself: a peer may still show it online from before it stopped
        return (state.get("read_on") == host.name
                and crmmon.node_state(state, host.name) in ("online", "standby"))

    with journal.operation(ctx, cluster, "hb.start", {"host": host.name, "timeout": timeout},
                           yes=yes, summary=f"start the cluster stack on {host.name}: {command}"):
        crm.run_action(ctx, host, command, timeout=timeout)
        if remote.is_dry(ctx):
            return before
        after = crm.wait_for(ctx, cluster, converged, timeout, f"{host.name} online in crm_mon",
                             prefer=[host.name] + _peers(ctx, cluster, host.name), settle=True,
                             give_up=crm.host_gone(ctx, host))
    print(crm.summary(after))
    return after


def stop(ctx, host_name, timeout=120, force=False, yes=False):
    """Stop the cluster stack on HOST and verify the peer sees it OFFLINE (5.2.2.2 f A, 5.1.1 b)."""
    host, cluster = node_of(ctx, host_name, option="host")
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    command = _stack_command(host, "stack_stop")
    peers = _peers(ctx, cluster, host.name)
    before = crm.crm_status(ctx, cluster, prefer=peers)
    print(crm.summary(before))
    others = crmmon.others_online(before, host.name)
    if not others and crmmon.node_state(before, host.name) != "offline" and not force:
        raise StateError(f"refusing to stop the cluster stack on {host.name}: no other {cluster} "
                         f"node is online, the service would stop (--force to do it anyway)")
    groups = groups_of_cluster(ctx, cluster)
    kind = remote.inventory(ctx).cluster(cluster).kind

    def converged(state):
        if crmmon.node_state(state, host.name) != "offline":
            return False
        if not others:
            return True
        return all(crmmon.group_node(state, g) in others for g in groups)

    args = {"host": host.name, "timeout": timeout, "force": force}
    plan = f"stop the cluster stack on {host.name}: {command}"
    if others and groups:
        plan += f" ({', '.join(groups)} ends up on {' or '.join(others)})"
    elif not others:
        plan += " (NO other node online: the service stops)"
    with journal.operation(ctx, cluster, "hb.stop", args, yes=yes, summary=plan):
        if kind == "db":
            if remote.is_dry(ctx):
                print(f"[dry] would record the newest-data backend of {cluster} before the stop")
            else:
                newest.record_before_stop(ctx, cluster, host.name, force)
        crm.run_action(ctx, host, command, timeout=timeout)
        if remote.is_dry(ctx):
            return before
        expected = f"{host.name} OFFLINE seen from {', '.join(peers)}"
        if others:
            expected += f", {', '.join(groups)} started on {', '.join(others)}"
        after = crm.wait_for(ctx, cluster, converged, timeout, expected, only=peers)
    print(crm.summary(after))
    return after


@task(name="start", help=helps(None, {"host": "inventory host whose cluster stack to start",
            "timeout": "seconds to wait for it to be online (default 120)",
            "yes": True}))
def start_task(ctx, host, timeout=120, yes=False):
    """Start the cluster stack on a host; return once crm_mon shows it online.

    Runbook 5.1.2.2 (c), table 5-4 "Heartbeat process down": `service heartbeat start` prints OK
    even when the start fails, so crm_mon is the proof (inventory var stack_start).
    """
    start(ctx, host, timeout=timeout, yes=yes)


@task(name="stop", help=helps(None, {"host": "inventory host whose cluster stack to stop",
            "timeout": "seconds to wait for it to be offline (default 120)",
            "force": "even when no other node is online (stops the service)",
            "yes": True}))
def stop_task(ctx, host, timeout=120, force=False, yes=False):
    """Stop the cluster stack on a host; return once the peer sees it OFFLINE.

    Runbook 5.2.2.2 (f) A, 5.1.1 (b): `service heartbeat stop` (inventory var stack_stop). On a DB
    node the newest-data backend is recorded first. Refused when no other node is online.
    """
    stop(ctx, host, timeout=timeout, force=force, yes=yes)


# --------------------------------------------------------------------------- fence

FENCE_ACTIONS = ("off", "reboot")
#: every fencing event (newest first). Without --verbose Pacemaker 2.1 prints one successful
#: event per target, and not always the newest: a second fencing of a node was not seen
FENCE_HISTORY_ALL = "stonith_admin --history '*' --verbose --output-as=xml"


def parse_fence_history(text):
    """Pure: `stonith_admin --history NODE --output-as=xml` -> [{"action", "target", "status",
    "origin", "delegate", "completed", "client"}], in the order printed."""
    if not (text or "").strip():
        return []
    root = ET.fromstring(text)
    return [{k: e.get(k) for k in ("action", "target", "status", "origin", "delegate",
                                   "completed", "client", "exit-reason")}
            for e in root.iter("fence_event")]


#: what an unfenced DB cluster risks (hb.status, status: a warning, not a fault)
UNFENCED_RISK = ("no fencing (stonith-enabled false or no fence device): a partition can run "
                 "two pgpools: split brain")


def fencing_view(state, kind, events=()):
    """Pure: the fencing part of one cluster's crm_mon STATE and its fence history EVENTS:
    {"enabled", "devices": [{"id", "agent", "role", "node", "failed"}], "events": [the 5
    latest, oldest first], "risk": UNFENCED_RISK for a DB cluster without fencing, else None}."""
    enabled = state.get("stonith_enabled")
    devices = [{"id": r.get("id"), "agent": r.get("agent"), "role": r.get("role"),
                "node": r.get("node"), "failed": bool(r.get("failed"))}
               for r in state.get("resources") or []
               if (r.get("agent") or "").startswith("stonith:")]
    events = sorted(events or [], key=lambda e: e.get("completed") or "")[-5:]
    risk = UNFENCED_RISK if kind == "db" and (enabled is False or not devices) else None
    return {"enabled": enabled, "devices": devices, "events": events, "risk": risk}


def fencing_lines(view):
    """Pure: hb.status's lines about fencing (none when VIEW is None)."""
    if not view:
        return []
    devs = ", ".join(f"{d['id']} {d.get('role') or '?'}"
                     + (f" on {d['node']}" if d.get("node") else "")
                     + (" FAILED" if d.get("failed") else "") for d in view["devices"])
    out = [f"   fencing {'enabled' if view.get('enabled') else 'DISABLED'}; devices: "
           f"{devs or 'none'}"]
    for e in view.get("events") or []:
        by = e.get("delegate") or e.get("origin") or "?"
        out.append(f"   fenced: {e.get('target')} ({e.get('action')}) by {by} at "
                   f"{e.get('completed') or '?'}: {e.get('status')}")
    if view.get("risk"):
        out.append(f"   !! {view['risk']}")
    return out


def fence_events(ctx, host):
    """Every fencing event HOST's cluster remembers (`stonith_admin --history '*'`); [] when
    the history cannot be read (shown as no event, never a failure of the status)."""
    res = remote.run(ctx, host, FENCE_HISTORY_ALL, probe=True, warn=True)
    if res.exited != 0:
        return []
    try:
        return parse_fence_history(res.stdout)
    except ET.ParseError:
        return []


def fence_devices(ctx, host, node):
    """The fence devices able to fence NODE (`stonith_admin --list NODE`, read on HOST)."""
    res = remote.run(ctx, host, f"stonith_admin --list {shell.q(node)}", probe=True, warn=True)
    return [ln.strip() for ln in (res.stdout or "").splitlines()
            if ln.strip() and " " not in ln.strip()] if res.exited == 0 else []


def crm_status_with_fencing(ctx, cluster):
    """crm.crm_status of CLUSTER plus "fencing" (fencing_view), the history read on the node
    crm_mon answered on when fencing is enabled (an unfenced cluster has none to show)."""
    state = crm.crm_status(ctx, cluster)
    events = []
    if state.get("stonith_enabled") is not False and state.get("read_on"):
        events = fence_events(ctx, remote.host(ctx, state["read_on"]))
    state["fencing"] = fencing_view(state, remote.inventory(ctx).cluster(cluster).kind, events)
    return state


def fencing_enabled(ctx, host):
    """stonith-enabled of the CIB read on HOST (Pacemaker's default: true)."""
    res = remote.run(ctx, host, "crm_attribute --type crm_config --name stonith-enabled --query "
                                "--quiet", probe=True, warn=True)
    value = (res.stdout or "").strip().lower()
    return value not in ("false", "no", "0", "off")


def fence_history(ctx, host, node):
    res = remote.run(ctx, host, f"stonith_admin --history {shell.q(node)} --verbose "
                                f"--output-as=xml", probe=True, warn=True)
    if res.exited != 0:
        raise StateError(f"{host.name}: stonith_admin --history {node} failed: "
                         f"{(res.stderr or res.stdout).strip()[:200]}")
    return parse_fence_history(res.stdout)


def fence(ctx, node, action="off", timeout=120, force=False, yes=False):
    """Fence NODE through the cluster's fencing devices (stonith_admin, run on a peer); verified:
    a new successful fence event for NODE in the fencing history, and NODE OFFLINE (off) or back
    online (reboot) in the peer's crm_mon. A DB node: the newest-data backend is recorded first."""
    host, cluster = node_of(ctx, node)
    if action not in FENCE_ACTIONS:
        raise UsageError(f"--action must be one of {', '.join(FENCE_ACTIONS)}, not {action!r}")
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    peers = _peers(ctx, cluster, host.name)
    before = crm.crm_status(ctx, cluster, prefer=peers, only=peers)
    print(crm.summary(before))
    via = remote.host(ctx, before["read_on"])
    if not fencing_enabled(ctx, via):
        raise StateError(f"cluster {cluster}: stonith-enabled is false: no fencing configured, "
                         f"nothing can fence {host.name}")
    others = crmmon.others_online(before, host.name)
    if not others and not force:
        raise StateError(f"refusing to fence {host.name}: no other {cluster} node is online, the "
                         f"service would stop (--force to do it anyway)")
    done_before = [e for e in fence_history(ctx, via, host.name) if e.get("status") == "success"]
    flag = {"off": "--fence", "reboot": "--reboot"}[action]
    command = f"stonith_admin {flag} {shell.q(host.name)} --timeout {int(timeout)}"
    kind = remote.inventory(ctx).cluster(cluster).kind
    with journal.operation(ctx, cluster, "hb.fence", {"node": host.name, "action": action},
                           yes=yes, summary=f"fence ({action}) {host.name} from {via.name}: "
                                            f"{command}"):
        if kind == "db" and not remote.is_dry(ctx):
            newest.record_before_stop(ctx, cluster, host.name, force)
        crm.run_action(ctx, via, command, timeout=timeout + 30)
        if remote.is_dry(ctx):
            return before
        events = fence_history(ctx, via, host.name)
        new = [e for e in events if e.get("status") == "success" and e not in done_before]
        new.sort(key=lambda e: e.get("completed") or "")
        if not new:
            latest = sorted(events, key=lambda e: e.get("completed") or "")[-1:]
            raise HaError(f"{host.name}: no successful fencing event after `{command}` (history: "
                          f"{latest or 'empty'})", HaError.NOT_CONVERGED)
        want = "offline" if action == "off" else "online"
        after = crm.wait_for(ctx, cluster, lambda st: crmmon.node_state(st, host.name) == want,
                             timeout, f"{host.name} {want} after fencing ({action})",
                             prefer=peers)
        print(f"{host.name} fenced ({action}) by {new[-1].get('delegate') or new[-1].get('origin')} "
              f"at {new[-1].get('completed')}", flush=True)
    print(crm.summary(after))
    return after


@task(name="fence",
      help=helps(None, {"node": "inventory host to fence (power off or reboot via its device)",
            "action": "off (default) or reboot",
            "timeout": "seconds for the fencing and its verification (default 120)",
            "force": "even when no other node is online (stops the service)",
            "yes": True}))
def fence_task(ctx, node, action="off", timeout=120, force=False, yes=False):
    """Fence a node on purpose (STONITH): `stonith_admin --fence|--reboot NODE` run on a peer.

    Verified: a new successful event in `stonith_admin --history` and the node OFFLINE (off) or
    online again (reboot) in the peer's crm_mon. Refused when stonith-enabled is false, or when
    no other node is online (unless --force). A DB node: the newest-data backend is recorded
    first. Power it back on through its BMC (lab: lab.heal).
    """
    fence(ctx, node, action=action, timeout=timeout, force=force, yes=yes)


# --------------------------------------------------------------------------- log


def log_command(path, lines):
    q = shell.q(path)
    return (f"test -r {q} && {{ grep -E -e {shell.q(LOG_PATTERN)} -- {q} | "
            f"tail -n {int(lines)}; }}")


def log(ctx, host_name, lines=50):
    """ERROR/FATAL lines of HOST's cluster log (inventory ha_log), newest last."""
    host, cluster = node_of(ctx, host_name, option="host")
    lines = checks.whole("lines", lines, 1, 1_000_000, "lines")
    path = (host.vars or {}).get("ha_log")
    if not path:
        raise UsageError(f"{host.name}: the inventory sets no ha_log (the cluster log file)")
    res = remote.run(ctx, host, log_command(path, lines), probe=True, warn=True)
    if res.exited != 0:
        raise StateError(f"{host.name}: cannot read the cluster log {path}")
    text = res.stdout or ""
    parsed = {}
    for entry in parsers.parse_ha_log(text):
        parsed.setdefault(entry.get("line", "").rstrip(), entry)
    entries = []
    for line in text.splitlines():  # every line grep found is shown, parsed or not
        line = line.rstrip()
        if line:
            entries.append(parsed.get(line) or {"level": None, "message": line, "line": line})
    return {"host": host.name, "log": path, "entries": entries}


@task(name="log", help=helps(None, {"host": "inventory host whose cluster log to read",
            "lines": "how many matching lines (default 50, newest last)",
            "format": True}))
def log_task(ctx, host, lines=50, format=None):
    """Show the error lines of a node's cluster log (inventory var ha_log), newest last.

    Runbook 5.1.2.2 (c): `egrep "(ERROR|FATAL)" ha-log` when Heartbeat will not start; Pacemaker 2
    also writes lower-case `error:`/`crit:` levels, which are included.
    """
    fmt = output.resolve_format(ctx, format)
    data = log(ctx, host, lines)
    output.emit(data, fmt, table=log_table)
    return data


def log_table(data):
    out = [f"== {data['host']}: {data['log']} ({len(data['entries'])} error lines, newest last)"]
    out.extend(entry["line"] for entry in data["entries"])
    return "\n".join(out)


# --------------------------------------------------------------------------- maintenance, clear


def _node_maintenance(state, node):
    return bool((crmmon.find_node(state, node) or {}).get("maintenance"))


def maintenance(ctx, on, node=None, cluster=None, timeout=60, yes=False):
    """Cluster maintenance-mode (or one NODE's maintenance) on or off, verified in crm_mon."""
    if node is not None:
        host, cluster = node_of(ctx, node)
    else:
        cluster = checks.cluster(ctx, cluster, None).name if cluster is not None else \
            checks.cluster(ctx, None, "db").name
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    before = crm.crm_status(ctx, cluster)
    value = "true" if on else "false"
    if node is not None:
        command = f"crm_attribute --type nodes --node {shell.q(node)} --name maintenance " \
                  f"--update {value}"
        what = f"node {node} maintenance {'on' if on else 'off'}"

        def converged(state):
            return _node_maintenance(state, node) == on
    else:
        command = f"crm_attribute --type crm_config --name maintenance-mode --update {value}"
        what = f"cluster {cluster} maintenance-mode {'on' if on else 'off'}"

        def converged(state):
            return bool(state.get("maintenance_mode")) == on
    print(crm.summary(before))
    args = {"on": on, "node": node, "cluster": cluster}
    with journal.operation(ctx, cluster, "hb.maintenance", args, yes=yes, summary=what):
        if converged(before):
            print(f"already: {what}")
            return before
        crm.run_action(ctx, remote.host(ctx, before["read_on"]), command)
        if remote.is_dry(ctx):
            return before
        after = crm.wait_for(ctx, cluster, converged, timeout, what, prefer=[before["read_on"]])
    print(crm.summary(after))
    return after


@task(name="maintenance",
      help=helps(None, {"on": "turn maintenance on", "off": "turn maintenance off",
            "node": "one node only (node attribute maintenance) instead of the whole cluster",
            "cluster": "db or lb (default: the DB cluster; ignored with --node)",
            "timeout": "seconds to wait (default 60)",
            "yes": True}))
def maintenance_task(ctx, on=False, off=False, node=None, cluster=None, timeout=60, yes=False):
    """Cluster maintenance-mode or a node's maintenance on/off, verified in crm_mon.

    In maintenance Pacemaker neither starts, stops nor monitors resources (cluster), or those
    of the node. `crm_attribute --type crm_config --name maintenance-mode`, or
    `--type nodes --node N --name maintenance`.
    """
    if on == off:
        raise UsageError("give exactly one of --on or --off")
    maintenance(ctx, on, node, cluster, timeout, yes)


def clear(ctx, resource, cluster=None, timeout=60, yes=False):
    """Remove the move/ban constraints (cli-prefer-*, cli-ban-*) of RESOURCE, verified."""
    remote.check_value("resource", resource)
    c = checks.cluster(ctx, cluster, None) if cluster is not None else checks.cluster(ctx, None, "db")
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    before = crm.crm_status(ctx, c.name)
    ids = known_resources(ctx, c.name, before["read_on"])
    if resource not in ids:
        raise UsageError(f"unknown resource {resource!r} in the {c.name} cluster "
                         f"(known: {', '.join(sorted(ids))})")
    where = remote.host(ctx, before["read_on"])
    left = [x for x in crm.read_constraints(ctx, where) or [] if x["resource"] == resource]
    if not left:
        print(f"no move/ban constraint on {resource}")
        return before
    names = ", ".join(x["id"] for x in left)
    with journal.operation(ctx, c.name, "hb.clear", {"resource": resource, "cluster": c.name},
                           yes=yes, summary=f"remove {names}"):
        crm.run_action(ctx, where, f"crm_resource --clear --resource {shell.q(resource)}")
        if remote.is_dry(ctx):
            return before
        still = [x for x in crm.read_constraints(ctx, where) or [] if x["resource"] == resource]
        if still:
            raise HaError(f"{', '.join(x['id'] for x in still)} still in the CIB after "
                          f"crm_resource --clear", HaError.NOT_CONVERGED)
    print(f"removed {names}; Pacemaker places {resource} by its own rules again")
    return crm.crm_status(ctx, c.name, prefer=[before["read_on"]])


@task(name="clear",
      help=helps(None, {"resource": "resource or group whose move/ban constraints to remove",
            "cluster": "db or lb (default: the DB cluster)",
            "timeout": "seconds to wait (default 60)",
            "yes": True}))
def clear_task(ctx, resource, cluster=None, timeout=60, yes=False):
    """Remove what `crm_resource --move/--ban` (pcs/crm resource move/ban) left in the CIB.

    The cli-prefer-*/cli-ban-* location constraints pin a resource or keep it off a node for
    ever; `crm_resource --clear --resource R` removes them. Verified by reading the CIB again.
    """
    clear(ctx, resource, cluster, timeout, yes)
