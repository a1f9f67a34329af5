"""Pacemaker (Heartbeat's successor): status, standby/online, cleanup, stack start/stop, log.

Runbook: `crm_mon -i 3`, `crm_standby -U n -v true/false`, `crm_resource -H h -r r -C`,
`service heartbeat start/stop/status` and `egrep "(ERROR|FATAL)" ha-log` (sections 5.1, 5.2).
Every mutating task verifies its effect by reading crm_mon again before it returns.
"""

import shlex
import sys
import time

from hatasks import cluster as crm
from hatasks import checks, journal, output, remote
from hatasks.base import task
from hatasks.errors import HaError, StateError, UnreachableError, UsageError

#: the one read-only view of a cluster every step uses
CRM_MON = "crm_mon -1 --output-as=xml"
#: the configured resources (to refuse an unknown one before acting)
CIB_RESOURCES = "cibadmin --query --scope resources"
#: how often a step re-reads crm_mon while it waits for an effect (seconds)
POLL_INTERVAL = 0.1
#: roles in which a resource counts as started (settled) on its node
ACTIVE_ROLES = ("Started", "Promoted", "Unpromoted", "Master", "Slave")
#: roles in which a resource still occupies its node (settled or in transition)
PRESENT_ROLES = ACTIVE_ROLES + ("Starting", "Stopping", "Migrating", "Promoting", "Demoting")
#: what `hb.log` looks for: the runbook's ERROR/FATAL plus Pacemaker 2's lower-case levels
LOG_PATTERN = r"(ERROR|FATAL|CRIT)|[[:space:]](error|crit|alert|emerg):"


# --------------------------------------------------------------------------- inputs


#: web.py calls hb._fmt
_fmt = output.resolve_format


def cluster_names(inv):
    """Names of the clusters (inventory groups with a cluster_kind) in inventory order."""
    return list(inv.clusters)


def node_of(ctx, name, option="node", kind=None):
    """Validate a --node/--host value: (Host, cluster name). Nothing has run yet."""
    remote.check_value(option, name)
    inv = remote.inventory(ctx)
    host = inv.host(name)
    cluster = host.cluster or inv.cluster_of(name)
    cluster = getattr(cluster, "name", cluster)
    if not cluster:
        raise UsageError(f"--{option} {name}: host is in no cluster of {inv.path}")
    if kind is not None and inv.cluster(cluster).kind != kind:
        raise UsageError(f"--{option} {name}: host of the {cluster} cluster, need a {kind} host")
    return host, cluster


def cluster_of(ctx, name):
    """Validate a --cluster value; return the inventory Cluster."""
    remote.check_value("cluster", name)
    inv = remote.inventory(ctx)
    known = cluster_names(inv)
    if name not in known:
        raise UsageError(f"unknown cluster {name!r} (known: {', '.join(known)})")
    return inv.cluster(name)


# --------------------------------------------------------------------------- reading


def _first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def crm_status(ctx, cluster, prefer=None, only=None):
    """Read crm_mon from the first node of CLUSTER that answers (read-only, runs under --dry).

    prefer: host names to try first; only: restrict to these host names (e.g. a peer's view).
    Returns the parsed crm_mon (DESIGN.md hb.status shape) plus "cluster", "read_on" (the host it
    was read from) and "unanswered" ({host: reason} for hosts tried before it).
    """
    inv = remote.inventory(ctx)
    hosts = list(inv.cluster(cluster).hosts)
    if only is not None:
        hosts = [h for h in hosts if h.name in only]
    if prefer:
        order = {name: i for i, name in enumerate(prefer)}
        hosts.sort(key=lambda h: order.get(h.name, len(order)))
    problems, unreachable = {}, set()
    for host in hosts:
        try:
            res = remote.run(ctx, host, CRM_MON, probe=True, warn=True)
        except UnreachableError as exc:
            problems[host.name] = exc.message
            unreachable.add(host.name)
            continue
        out = res.stdout or ""
        if "<pacemaker-result" not in out:
            why = _first_line(res.stderr) or _first_line(out) or f"exit {res.exited}"
            problems[host.name] = f"crm_mon failed: {why}"
            continue
        try:  # a stopped stack answers with <status code="102" message="Not connected">
            state = crm.parse_crm_mon_xml(out)
        except ValueError as exc:
            problems[host.name] = str(exc)
            continue
        state = dict(state)
        state["cluster"] = cluster
        state["read_on"] = host.name
        state["unanswered"] = problems
        return state
    names = "; ".join(f"{n}: {why}" for n, why in problems.items()) or "no host"
    if hosts and len(unreachable) == len(hosts):
        raise UnreachableError(f"cluster {cluster}: no node answered ({names})")
    raise StateError(f"cluster {cluster}: no node gave a crm_mon status ({names})")


def node_state(state, name):
    for node in state.get("nodes", []):
        if node.get("name") == name:
            return node.get("state")
    return None


def group_resources(state, group):
    """The resources of GROUP (or the resource whose id is GROUP)."""
    return [r for r in state.get("resources", [])
            if r.get("group") == group or r.get("id") == group]


def running_on(state, node):
    return [r for r in state.get("resources", [])
            if node in (r.get("nodes") or [r.get("node")]) and r.get("role") in PRESENT_ROLES]


def group_node(state, group):
    """The node every resource of GROUP is started on, or None (stopped, split or moving)."""
    members = group_resources(state, group)
    nodes = {r.get("node") for r in members if r.get("role") in ACTIVE_ROLES}
    if members and len(nodes) == 1 and all(r.get("role") in ACTIVE_ROLES for r in members):
        return nodes.pop()
    return None


def failures_of(state, resource, node):
    return [f for f in state.get("failed_actions", [])
            if f.get("node") == node and f.get("resource") == resource]


def _groups_of_cluster(ctx, cluster):
    group = remote.inventory(ctx).cluster(cluster).vars.get("group")
    return [group] if group else []


def summary(state):
    """One readable paragraph of a cluster's state (used before/after every action)."""
    lines = []
    nodes = ", ".join(f"{n['name']} {n['state'].upper() if n['state'] == 'offline' else n['state']}"
                      for n in state.get("nodes", []))
    lines.append(f"cluster {state.get('cluster')} (read on {state.get('read_on')}): {nodes}")
    groups = {}
    for res in state.get("resources", []):
        groups.setdefault(res.get("group") or res.get("id"), []).append(res)
    for name, members in groups.items():
        where = sorted({f"{r.get('role')} {r.get('node') or ''}".strip() for r in members})
        lines.append(f"  {name}: {'; '.join(where)}")
    for f in state.get("failed_actions", []):
        lines.append(f"  FAILED {f.get('resource')} {f.get('operation')} on {f.get('node')}: "
                     f"rc={f.get('rc')} {f.get('reason') or ''}".rstrip())
    for name, why in (state.get("unanswered") or {}).items():
        lines.append(f"  ({name} did not answer: {why})")
    return "\n".join(lines)


def dc_idle(ctx, state):
    """True when the cluster's DC controller is idle (no transition pending or running)."""
    dc = state.get("dc")
    if not dc:
        return False
    res = remote.run(ctx, _host(ctx, state["read_on"]), f"crmadmin -S {shlex.quote(dc)}",
                     probe=True, warn=True)
    return res.exited == 0 and "S_IDLE" in (res.stdout or "") + (res.stderr or "")


def wait_for(ctx, cluster, check, timeout, expected, prefer=None, only=None, settle=False):
    """Poll crm_mon until check(state) is true; NOT_CONVERGED naming what was seen otherwise.

    settle=True: also wait until the DC is idle, seen on two polls in a row with check(state)
    true (a failback or a re-probe that the scheduler has still to run would not be idle).
    """
    deadline = time.monotonic() + timeout
    last, last_error, settled = None, None, 0
    while True:
        try:
            last = crm_status(ctx, cluster, prefer=prefer, only=only)
            last_error = None
            if check(last):
                if not settle:
                    return last
                settled = settled + 1 if dc_idle(ctx, last) else 0
                if settled >= 2:
                    return last
            else:
                settled = 0
        except HaError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    if last_error is not None and last is None:
        seen = last_error.message
    else:
        seen = summary(last).replace("\n", ";") if last else "nothing"
        if last_error is not None:
            seen += f"; last read failed: {last_error.message}"
        elif settle and last is not None and check(last):
            seen += f"; the DC ({last.get('dc')}) never settled (transition still running)"
    raise HaError(f"not converged after {timeout:g}s: expected {expected}; saw {seen}",
                  HaError.NOT_CONVERGED)


def _run_action(ctx, host, command, timeout=60):
    """Run a mutating command (printed only under --dry); fail on a non-zero exit."""
    res = remote.run(ctx, host, command, warn=True, timeout=timeout)
    if remote.is_dry(ctx) or res is None:
        return res
    if res.exited != 0:
        why = _first_line(res.stderr) or _first_line(res.stdout) or f"exit {res.exited}"
        raise StateError(f"{getattr(host, 'name', host)}: `{command}` failed: {why}")
    return res


def _host(ctx, name):
    return remote.inventory(ctx).host(name)


# --------------------------------------------------------------------------- status


def status_step(ctx, cluster=None):
    """Step: crm_mon of one cluster (or all): {"clusters", "nodes", "resources", "failed_actions"}.

    Items carry a "cluster" field; per-cluster "read_on" (node read) and "dc" are in "views".
    """
    inv = remote.inventory(ctx)
    names = [cluster_of(ctx, cluster).name] if cluster else cluster_names(inv)
    result = {"clusters": names, "nodes": [], "resources": [], "failed_actions": [], "views": {}}
    for name in names:
        state = crm_status(ctx, name)
        for key in ("nodes", "resources", "failed_actions"):
            result[key].extend(dict(item, cluster=name) for item in state.get(key, []))
        result["views"][name] = {"read_on": state["read_on"], "dc": state.get("dc"),
                                 "unanswered": state.get("unanswered") or {}}
    return result


def _status_table(data):
    from tabulate import tabulate

    out = []
    for name in data["clusters"]:
        view = data["views"][name]
        head = f"== cluster {name}  (read on {view['read_on']}"
        if view.get("dc"):
            head += f", DC {view['dc']}"
        out.append(head + ")")
        for host, why in view["unanswered"].items():
            out.append(f"   !! {host} did not answer: {why}")
        nodes = [n for n in data["nodes"] if n["cluster"] == name]
        out.append(tabulate([[n["name"], n["state"].upper() if n["state"] != "online" else "online"]
                             for n in nodes], headers=["node", "state"]))
        res = [r for r in data["resources"] if r["cluster"] == name]
        out.append("")
        out.append(tabulate([[r.get("group") or "-", r["id"], r.get("role"), r.get("node") or "-"]
                             for r in res], headers=["group", "resource", "role", "node"]))
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


@task(help={"cluster": "db or lb (default: every cluster of the inventory)",
            "format": "table or json"})
def status(ctx, cluster=None, format=None):
    """Show nodes, resources and failed actions of the Pacemaker clusters.

    Runbook 5.1.2.1, 5.2.2.1: `crm_mon -i 3` (here `crm_mon -1 --output-as=xml` on the first node
    that answers): each node online / standby / OFFLINE, where each group is Started, and the
    `Failed actions` with node, operation, rc and reason.
    """
    fmt = output.resolve_format(ctx, format)
    data = status_step(ctx, cluster)
    output.emit(data, fmt, table=_status_table)
    return data


# --------------------------------------------------------------------------- standby / online


def _others_online(state, node):
    return [n["name"] for n in state.get("nodes", [])
            if n["name"] != node and n["state"] == "online"]


def standby_step(ctx, node, timeout=60, force=False, yes=False):
    """Put NODE in standby and wait until its resources run on another node (5.1.1 a, 5.2.1)."""
    host, cluster = node_of(ctx, node)
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    before = crm_status(ctx, cluster)
    print(summary(before))
    if node_state(before, node) is None:
        raise StateError(f"{node} is not a node of the running {cluster} cluster (crm_mon on "
                         f"{before['read_on']})")
    others = _others_online(before, node)
    if not others and not force:
        raise StateError(f"refusing standby of {node}: no other {cluster} node is online, the "
                         f"service would stop (--force to do it anyway)")
    groups = _groups_of_cluster(ctx, cluster)
    moving = sorted({r.get("group") or r["id"] for r in running_on(before, node)} | set(
        g for g in groups if group_node(before, g) == node))
    args = {"node": node, "timeout": timeout, "force": force}
    command = f"crm_standby -N {shlex.quote(node)} -v on"

    def converged(state):
        if node_state(state, node) != "standby" or running_on(state, node):
            return False
        if not others:  # forced: the service stops, nothing to run elsewhere
            return True
        return all(group_node(state, g) not in (None, node) for g in moving)

    plan = f"standby {node}" + (f", {', '.join(moving)} moves to {' or '.join(others)}"
                                if moving and others else "")
    with journal.operation(ctx, cluster, "hb.standby", args, yes=yes, summary=plan):
        if node_state(before, node) == "standby":
            print(f"{node} is already in standby")
        else:
            _run_action(ctx, _host(ctx, before["read_on"]), command)
        if remote.is_dry(ctx):
            return before
        where = " and ".join(others) or "nowhere (forced)"
        after = wait_for(ctx, cluster, converged, timeout,
                         f"{node} standby, {', '.join(moving) or 'its resources'} "
                         f"started on {where}",
                         prefer=[before["read_on"]])
    print(summary(after))
    return after


def online_step(ctx, node, timeout=60, yes=False):
    """Bring NODE back online from standby and wait until verified (5.1.1, 5.2.1 recovery)."""
    host, cluster = node_of(ctx, node)
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    before = crm_status(ctx, cluster)
    print(summary(before))
    if node_state(before, node) is None:
        raise StateError(f"{node} is not a node of the running {cluster} cluster")
    if node_state(before, node) == "offline":
        raise StateError(f"{node} is OFFLINE (cluster stack down or unreachable): use hb.start "
                         f"--host {node}, standby off cannot bring it back")
    groups = _groups_of_cluster(ctx, cluster)
    command = f"crm_standby -N {shlex.quote(node)} -v off"

    def converged(state):
        return node_state(state, node) == "online" and all(group_node(state, g) for g in groups)

    with journal.operation(ctx, cluster, "hb.online", {"node": node, "timeout": timeout}, yes=yes,
                           summary=f"standby off for {node}"):
        if node_state(before, node) == "online":
            print(f"{node} is already online")
        else:
            _run_action(ctx, _host(ctx, before["read_on"]), command)
        if remote.is_dry(ctx):
            return before
        after = wait_for(ctx, cluster, converged, timeout,
                         f"{node} online and {', '.join(groups) or 'groups'} started",
                         prefer=[before["read_on"]], settle=True)
    print(summary(after))
    return after


@task(help={"node": "inventory host to put in standby (db01, lb02, ...)",
            "timeout": "seconds to wait for the resources to run elsewhere (default 60)",
            "force": "even when no other node is online (stops the service)",
            "yes": "do not ask for confirmation (needed without a terminal)"})
def standby(ctx, node, timeout=60, force=False, yes=False):
    """Put a node in standby; return once its resources run on the other node.

    Runbook 5.1.1 (a), 5.2.1 HB failover: `crm_standby -U node -v true`, then crm_mon shows the
    node standby and the group Started on the other node. Refused when no other node is online.
    """
    standby_step(ctx, node, timeout=timeout, force=force, yes=yes)


@task(help={"node": "inventory host to bring back online",
            "timeout": "seconds to wait (default 60)",
            "yes": "do not ask for confirmation (needed without a terminal)"})
def online(ctx, node, timeout=60, yes=False):
    """Bring a standby node back online; return once crm_mon shows it online and settled.

    Runbook 5.1.1 recovery, 5.2.1, 5.2.2.2 G: `crm_standby -U node -v false`.
    """
    online_step(ctx, node, timeout=timeout, yes=yes)


# --------------------------------------------------------------------------- cleanup


def known_resources(ctx, cluster, source):
    """Ids of the resources, groups and clones configured in the CIB (read on SOURCE)."""
    import xml.etree.ElementTree as ET

    res = remote.run(ctx, _host(ctx, source), CIB_RESOURCES, probe=True, warn=True)
    try:
        root = ET.fromstring(res.stdout or "") if res.exited == 0 else None
    except ET.ParseError:
        root = None
    if root is None:
        raise StateError(f"cluster {cluster}: cannot read the configured resources on {source} "
                         f"(`{CIB_RESOURCES}` exited {res.exited})")
    return {el.get("id") for tag in ("primitive", "group", "clone", "master", "bundle")
            for el in root.iter(tag) if el.get("id")}


def cleanup_step(ctx, resource, node, timeout=60, yes=False):
    """Clean up RESOURCE's failure on NODE; wait until the failed action is gone (5.1.2, 5.2.2)."""
    remote.check_value("resource", resource)
    host, cluster = node_of(ctx, node)
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    before = crm_status(ctx, cluster)
    print(summary(before))
    ids = known_resources(ctx, cluster, before["read_on"])
    if resource not in ids:
        raise UsageError(f"unknown resource {resource!r} in the {cluster} cluster "
                         f"(known: {', '.join(sorted(ids))})")
    if not failures_of(before, resource, node):
        print(f"no failed action of {resource} on {node}; "
              "cleaning up anyway (resets its fail count)")
    members = [r["id"] for r in group_resources(before, resource)] or [resource]
    command = f"crm_resource --cleanup -r {shlex.quote(resource)} -N {shlex.quote(node)}"

    def converged(state):
        if any(failures_of(state, r, node) for r in members + [resource]):
            return False
        mine = [r for r in state.get("resources", []) if r["id"] in members]
        return bool(mine) and all(r.get("role") in ACTIVE_ROLES for r in mine)

    args = {"resource": resource, "node": node, "timeout": timeout}
    with journal.operation(ctx, cluster, "hb.cleanup", args, yes=yes,
                           summary=f"clean up {resource} on {node}"):
        _run_action(ctx, _host(ctx, before["read_on"]), command)
        if remote.is_dry(ctx):
            return before
        after = wait_for(ctx, cluster, converged, timeout,
                         f"no failed action of {resource} on {node} and {resource} started",
                         prefer=[before["read_on"]], settle=True)
    print(summary(after))
    return after


@task(help={"resource": "resource (or group) id, e.g. pgpool, apache",
            "node": "inventory host whose failure to clear",
            "timeout": "seconds to wait (default 60)",
            "yes": "do not ask for confirmation (needed without a terminal)"})
def cleanup(ctx, resource, node, timeout=60, yes=False):
    """Clear a resource's failed action on a node; return once it is gone and the resource runs.

    Runbook 5.1.2.2 (d), 5.2.2 pgpool recovery: `crm_resource -H host -r resource -C`
    (now `crm_resource --cleanup -r R -N N`), then `Failed actions` must disappear.
    """
    cleanup_step(ctx, resource, node, timeout=timeout, yes=yes)


# --------------------------------------------------------------------------- stack start / stop


def _stack_command(host, key):
    command = (host.vars or {}).get(key)
    if not command:
        raise UsageError(f"{host.name}: the inventory sets no {key} (the command that "
                         f"{'starts' if key == 'stack_start' else 'stops'} the cluster stack)")
    return command


def _peers(ctx, cluster, name):
    return [h.name for h in remote.inventory(ctx).cluster(cluster).hosts if h.name != name]


def start_step(ctx, host_name, timeout=120, yes=False):
    """Start the cluster stack on HOST; wait until crm_mon shows it online (5.1.2, table 5-4)."""
    host, cluster = node_of(ctx, host_name, option="host")
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    command = _stack_command(host, "stack_start")
    try:
        before = crm_status(ctx, cluster, prefer=_peers(ctx, cluster, host.name))
        print(summary(before))
    except HaError as exc:  # whole cluster down: nothing to read yet
        before = None
        print(f"cluster {cluster}: no node answers crm_mon yet ({exc.message})")
    if before is not None and node_state(before, host.name) in ("online", "standby"):
        print(f"{host.name} is already {node_state(before, host.name)}: nothing to start")
        return before

    def converged(state):
        return node_state(state, host.name) in ("online", "standby")

    with journal.operation(ctx, cluster, "hb.start", {"host": host.name, "timeout": timeout},
                           yes=yes, summary=f"start the cluster stack on {host.name}: {command}"):
        _run_action(ctx, host, command, timeout=timeout)
        if remote.is_dry(ctx):
            return before
        after = wait_for(ctx, cluster, converged, timeout, f"{host.name} online in crm_mon",
                         prefer=[host.name] + _peers(ctx, cluster, host.name), settle=True)
    print(summary(after))
    return after


def _record_newest(ctx, cluster, host_name, force):
    """Journal the newest-data backend before the DB stack stops (the manual's bold warning).

    hatasks.pgpool.record_newest reads SHOW pool_nodes; when pgpool cannot tell, an earlier
    record stays the reference; with no record at all the stop is refused unless --force.
    """
    from hatasks import pgpool  # the pgpool module owns SHOW pool_nodes and the record

    record = getattr(pgpool, "record_newest", None)
    if record is None:
        print("warning: hatasks.pgpool.record_newest is not available: newest-data backend "
              "NOT recorded", file=sys.stderr, flush=True)
        return None
    try:
        result = record(ctx, cluster, f"hb.stop --host {host_name}")
    except HaError as exc:
        result = {"recorded": False, "error": exc.message, "previous": None}
    result = result or {}
    if result.get("recorded"):
        sync = (result.get("evidence") or {}).get("in_sync")
        note = {True: " (backends in sync)", False: " (pgpool degenerated)"}.get(sync, "")
        print(f"newest-data backend recorded: {result.get('newest')}{note}", flush=True)
        return result
    previous = result.get("previous")
    why = result.get("error") or "pgpool gave no answer"
    if previous:
        print(f"warning: newest-data backend not recorded now ({why}); the earlier record stays "
              f"the reference: {previous.get('newest')} at {previous.get('ts')}",
              file=sys.stderr, flush=True)
        return result
    if not force:
        raise StateError(f"cannot record the newest-data backend before stopping {host_name}: "
                         f"{why}, and no earlier record exists (--force to stop anyway)")
    print(f"warning: newest-data backend NOT recorded ({why}); stopping anyway (--force)",
          file=sys.stderr, flush=True)
    return result


def stop_step(ctx, host_name, timeout=120, force=False, yes=False):
    """Stop the cluster stack on HOST and verify the peer sees it OFFLINE (5.2.2.2 f A, 5.1.1 b)."""
    host, cluster = node_of(ctx, host_name, option="host")
    timeout = checks.positive("timeout", timeout, whole_to_int=True)
    command = _stack_command(host, "stack_stop")
    peers = _peers(ctx, cluster, host.name)
    before = crm_status(ctx, cluster, prefer=peers)
    print(summary(before))
    others = _others_online(before, host.name)
    if not others and node_state(before, host.name) != "offline" and not force:
        raise StateError(f"refusing to stop the cluster stack on {host.name}: no other {cluster} "
                         f"node is online, the service would stop (--force to do it anyway)")
    groups = _groups_of_cluster(ctx, cluster)
    kind = remote.inventory(ctx).cluster(cluster).kind

    def converged(state):
        if node_state(state, host.name) != "offline":
            return False
        if not others:
            return True
        return all(group_node(state, g) in others for g in groups)

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
                _record_newest(ctx, cluster, host.name, force)
        _run_action(ctx, host, command, timeout=timeout)
        if remote.is_dry(ctx):
            return before
        expected = f"{host.name} OFFLINE seen from {', '.join(peers)}"
        if others:
            expected += f", {', '.join(groups)} started on {', '.join(others)}"
        after = wait_for(ctx, cluster, converged, timeout, expected, only=peers)
    print(summary(after))
    return after


@task(help={"host": "inventory host whose cluster stack to start",
            "timeout": "seconds to wait for it to be online (default 120)",
            "yes": "do not ask for confirmation (needed without a terminal)"})
def start(ctx, host, timeout=120, yes=False):
    """Start the cluster stack on a host; return once crm_mon shows it online.

    Runbook 5.1.2.2 (c), table 5-4 "Heartbeat process down": `service heartbeat start` prints OK
    even when the start fails, so crm_mon is the proof (inventory var stack_start).
    """
    start_step(ctx, host, timeout=timeout, yes=yes)


@task(help={"host": "inventory host whose cluster stack to stop",
            "timeout": "seconds to wait for it to be offline (default 120)",
            "force": "even when no other node is online (stops the service)",
            "yes": "do not ask for confirmation (needed without a terminal)"})
def stop(ctx, host, timeout=120, force=False, yes=False):
    """Stop the cluster stack on a host; return once the peer sees it OFFLINE.

    Runbook 5.2.2.2 (f) A, 5.1.1 (b): `service heartbeat stop` (inventory var stack_stop). On a DB
    node the newest-data backend is recorded first. Refused when no other node is online.
    """
    stop_step(ctx, host, timeout=timeout, force=force, yes=yes)


# --------------------------------------------------------------------------- log


def log_command(path, lines):
    q = shlex.quote(path)
    return (f"test -r {q} && {{ grep -E -e {shlex.quote(LOG_PATTERN)} -- {q} | "
            f"tail -n {int(lines)}; }}")


def log_step(ctx, host_name, lines=50):
    """ERROR/FATAL lines of HOST's cluster log (inventory ha_log), newest last."""
    host, cluster = node_of(ctx, host_name, option="host")
    lines = checks.positive("lines", lines, int)
    path = (host.vars or {}).get("ha_log")
    if not path:
        raise UsageError(f"{host.name}: the inventory sets no ha_log (the cluster log file)")
    res = remote.run(ctx, host, log_command(path, lines), probe=True, warn=True)
    if res.exited != 0:
        raise StateError(f"{host.name}: cannot read the cluster log {path}")
    text = res.stdout or ""
    try:
        from hatasks import parsers
    except ImportError:
        parsers = None
    parse = getattr(parsers, "parse_ha_log", None)
    parsed = {}
    for entry in (parse(text) if parse is not None else []):
        parsed.setdefault(entry.get("line", "").rstrip(), entry)
    entries = []
    for line in text.splitlines():  # every line grep found is shown, parsed or not
        line = line.rstrip()
        if line:
            entries.append(parsed.get(line) or {"level": None, "message": line, "line": line})
    return {"host": host.name, "log": path, "entries": entries}


@task(help={"host": "inventory host whose cluster log to read",
            "lines": "how many matching lines (default 50, newest last)",
            "format": "table or json"})
def log(ctx, host, lines=50, format=None):
    """Show the error lines of a node's cluster log (inventory var ha_log), newest last.

    Runbook 5.1.2.2 (c): `egrep "(ERROR|FATAL)" ha-log` when Heartbeat will not start; Pacemaker 2
    also writes lower-case `error:`/`crit:` levels, which are included.
    """
    fmt = output.resolve_format(ctx, format)
    data = log_step(ctx, host, lines)
    output.emit(data, fmt, table=_log_table)
    return data


def _log_table(data):
    out = [f"== {data['host']}: {data['log']} ({len(data['entries'])} error lines, newest last)"]
    out.extend(entry["line"] for entry in data["entries"])
    return "\n".join(out)
