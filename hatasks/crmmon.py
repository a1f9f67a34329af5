"""crm_mon's XML as one dict, and pure questions about it (where a group runs, what is wrong).

No I/O here (``hatasks.crm`` reads crm_mon over ssh). ``parse_crm_mon_xml`` reads
``crm_mon -1 --output-as=xml`` (Pacemaker 2.x) and returns::

    {
      "source": "xml",
      "dc": "db01" | None,            # current designated controller
      "quorum": True | False | None,
      "nodes": [{"name", "state": "online|standby|offline", "dc", "online", "standby",
                 "maintenance", "unclean", "pending", ...}],
      "resources": [{"id", "group" (or None), "node" (or None when stopped), "nodes",
                     "role" ("Started", "Stopped", ...), "agent", "failed", "managed"}],
      "groups": {group_id: {"members": [ids], "node": node or None}},
      "failed_actions": [{"resource", "node", "operation", "rc" (int or None), "reason",
                          "status", "interval" (ms), "call", "last_rc_change", "exitreason"}],
      "fail_counts": [{"resource", "node", "fail_count", "last_failure"}],
    }

``state`` is one of three words. A node that is unclean or pending is ``offline`` (it cannot run
resources) with the flag set; a standby node is ``standby`` even while it still holds resources
(``standby (with active resources)``); a maintenance node keeps its online/offline state and has
``maintenance: True``.

Malformed input raises ``ValueError`` with a message that says what was wrong; tasks turn it into
an ``HaError``.
"""

import re
import xml.etree.ElementTree as ET

#: roles in which a resource counts as started (settled) on its node
ACTIVE_ROLES = ("Started", "Promoted", "Unpromoted", "Master", "Slave")
#: roles in which a resource still occupies its node (settled or in transition)
PRESENT_ROLES = ACTIVE_ROLES + ("Starting", "Stopping", "Migrating", "Promoting", "Demoting")

_OPERATIONS = ("start", "stop", "monitor", "promote", "demote", "migrate_to", "migrate_from",
               "notify", "reload", "reload-agent", "meta-data", "validate-all", "cancel")
_OP_KEY_RE = re.compile(r"^(?P<resource>.+)_(?P<operation>%s)_(?P<interval>\d+)$"
                        % "|".join(re.escape(o) for o in _OPERATIONS))


def _bool(value, default=False):
    if value is None:
        return default
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def _state(online, standby, unclean=False, pending=False):
    if not online or unclean or pending:
        return "offline"
    return "standby" if standby else "online"


def split_op_key(op_key):
    """``pgpool_monitor_10000`` -> ("pgpool", "monitor", 10000); else (key, None, None)."""
    m = _OP_KEY_RE.match(op_key or "")
    if not m:
        return op_key, None, None
    return m.group("resource"), m.group("operation"), int(m.group("interval"))


def _parse_interval(text):
    """``10s`` / ``1m30s`` / ``500ms`` / ``10000ms`` / ``10000`` -> milliseconds (int) or None."""
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    units = {"ms": 1, "s": 1000, "m": 60000, "min": 60000, "h": 3600000, "d": 86400000}
    total = 0
    pos = 0
    for m in re.finditer(r"(\d+)\s*(ms|min|s|m|h|d)", text):
        if m.start() != pos:
            return None
        total += int(m.group(1)) * units[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos else None


def _reason(exitstatus, exitreason, status):
    """The words an operator reads, as crm_mon's own text screen builds them."""
    exitreason = (exitreason or "").strip()
    status = (status or "").strip()
    if status and status.lower() not in ("complete", "done"):
        return "%s: %s" % (status, exitreason) if exitreason else status
    exitstatus = (exitstatus or "").strip()
    if exitstatus and exitreason:
        return "%s (%s)" % (exitstatus, exitreason)
    return exitstatus or exitreason or status


def _finish(result):
    """Fill ``groups`` and each group's location from the resource list."""
    groups = {}
    for res in result["resources"]:
        gid = res.get("group")
        if gid:
            groups.setdefault(gid, {"members": [], "node": None})
            if res["id"] not in groups[gid]["members"]:
                groups[gid]["members"].append(res["id"])
    result["groups"] = groups
    for gid, info in groups.items():
        info["node"] = group_node(result, gid)
    return result


def _empty(source):
    return {"source": source, "dc": None, "quorum": None, "nodes": [], "resources": [],
            "groups": {}, "failed_actions": [], "fail_counts": [], "bans": [],
            "maintenance_mode": False, "stonith_enabled": None, "stop_all_resources": False}


# --------------------------------------------------------------------------- XML

def parse_crm_mon_xml(text):
    """Parse ``crm_mon -1 --output-as=xml`` (Pacemaker 2.x) into the hb.status dict."""
    if text is None or not str(text).strip():
        raise ValueError("crm_mon XML is empty (is Pacemaker running on that host?)")
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    start = text.find("<")
    if start < 0:
        raise ValueError("crm_mon output is not XML: %r" % text.strip()[:120])
    try:
        root = ET.fromstring(text[start:])
    except ET.ParseError as exc:
        raise ValueError("crm_mon XML is malformed: %s" % exc) from None
    if root.tag == "crm_mon":
        raise ValueError("crm_mon XML uses the legacy --as-xml format; run "
                         "`crm_mon -1 --output-as=xml` (Pacemaker 2.x)")
    if root.tag != "pacemaker-result":
        raise ValueError("crm_mon XML has root <%s>, expected <pacemaker-result>" % root.tag)
    status = root.find("status")
    if status is not None and status.get("code") not in (None, "0"):
        errors = [e.text.strip() for e in status.iter("error") if e.text and e.text.strip()]
        raise ValueError("crm_mon failed (code %s, %s)%s" % (
            status.get("code"), status.get("message", "?"),
            ": " + "; ".join(errors) if errors else ""))
    nodes_el = root.find("nodes")
    if nodes_el is None:
        raise ValueError("crm_mon XML has no <nodes> section")

    result = _empty("xml")
    dc_el = root.find("summary/current_dc")
    if dc_el is not None and _bool(dc_el.get("present"), True) and dc_el.get("name"):
        result["dc"] = dc_el.get("name")
    if dc_el is not None and dc_el.get("with_quorum") is not None:
        result["quorum"] = _bool(dc_el.get("with_quorum"))
    opts = root.find("summary/cluster_options")
    if opts is not None:
        result["maintenance_mode"] = _bool(opts.get("maintenance-mode"))
        result["stonith_enabled"] = _bool(opts.get("stonith-enabled"))
        result["stop_all_resources"] = _bool(opts.get("stop-all-resources"))
        result["no_quorum_policy"] = opts.get("no-quorum-policy")

    for n in nodes_el.findall("node"):
        name = n.get("name")
        if not name:
            raise ValueError("crm_mon XML has a <node> without a name")
        online = _bool(n.get("online"))
        standby = _bool(n.get("standby")) or _bool(n.get("standby_onfail"))
        unclean = _bool(n.get("unclean"))
        pending = _bool(n.get("pending"))
        running = n.get("resources_running")
        result["nodes"].append({
            "name": name,
            "id": n.get("id"),
            "state": _state(online, standby, unclean, pending),
            "online": online,
            "standby": standby,
            "maintenance": _bool(n.get("maintenance")),
            "unclean": unclean,
            "pending": pending,
            "shutdown": _bool(n.get("shutdown")),
            "dc": _bool(n.get("is_dc")),
            "resources_running": int(running) if running and running.isdigit() else None,
            "type": n.get("type") or "member",
        })
    if result["dc"] is None:
        for node in result["nodes"]:
            if node["dc"]:
                result["dc"] = node["name"]

    resources_el = root.find("resources")
    if resources_el is not None:
        unclean = {n["name"] for n in result["nodes"] if n["unclean"]}
        _xml_resources(resources_el, None, result["resources"], unclean)

    for f in root.iterfind("failures/failure"):
        op_key = f.get("op_key", "")
        rsc, op, interval = split_op_key(op_key)
        exitcode = f.get("exitcode")
        try:
            rc = int(exitcode) if exitcode is not None else None
        except ValueError:
            rc = None
        operation = f.get("task") or op
        f_interval = _parse_interval(f.get("interval"))
        result["failed_actions"].append({
            "resource": rsc,
            "node": f.get("node"),
            "operation": operation,
            "rc": rc,
            "reason": _reason(f.get("exitstatus"), f.get("exitreason"), f.get("status")),
            "exitstatus": f.get("exitstatus"),
            "exitreason": f.get("exitreason") or "",
            "status": f.get("status"),
            "interval": f_interval if f_interval is not None else interval,
            "call": _int_or_none(f.get("call")),
            "last_rc_change": f.get("last-rc-change"),
            "op_key": op_key,
        })

    for ban in root.iterfind("bans/ban"):
        result["bans"].append({"id": ban.get("id"), "resource": ban.get("resource"),
                               "node": ban.get("node"), "weight": ban.get("weight")})

    for hist_node in root.iterfind("node_history/node"):
        for rh in hist_node.findall("resource_history"):
            if rh.get("fail-count"):
                result["fail_counts"].append({
                    "resource": rh.get("id"),
                    "node": hist_node.get("name"),
                    "fail_count": _fail_count(rh.get("fail-count")),
                    "last_failure": rh.get("last-failure"),
                })
    return _finish(result)


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _fail_count(value):
    if value is None:
        return None
    if str(value).upper() in ("INFINITY", "+INFINITY"):
        return 1000000
    return _int_or_none(value)


def _cached(node_el, unclean):
    """False for a location crm_mon only remembers (cached="false": the node is offline);
    an UNCLEAN node keeps it (the resource may still run there until it is fenced)."""
    return _bool(node_el.get("cached"), True) or node_el.get("name") in unclean


def _xml_resources(parent, group, out, unclean=()):
    for child in parent:
        if child.tag == "resource":
            # cached="false": the location is only remembered (the node is offline): dropped
            names = [n.get("name") for n in child.findall("node")
                     if n.get("name") and _cached(n, unclean)]
            stale = [n.get("name") for n in child.findall("node")
                     if n.get("name") and not _cached(n, unclean)]
            out.append({
                "id": child.get("id"),
                "group": group,
                "node": names[0] if len(names) == 1 else (names[0] if names else None),
                "nodes": names,
                "role": child.get("role") or ("Started" if names else "Stopped"),
                "agent": child.get("resource_agent"),
                "failed": _bool(child.get("failed")),
                "managed": _bool(child.get("managed"), True),
                "active": _bool(child.get("active"), bool(names)),
                "blocked": _bool(child.get("blocked")),
                "orphaned": _bool(child.get("orphaned")),
                "maintenance": _bool(child.get("maintenance")),
                "target_role": child.get("target_role"),
                "stale_on": stale,
            })
            if len(names) > 1:
                out[-1]["multiple_active"] = True
        elif child.tag == "group":
            _xml_resources(child, child.get("id"), out, unclean)
        elif child.tag in ("clone", "bundle", "replica"):
            _xml_resources(child, group, out, unclean)


# --------------------------------------------------------------------------- text


# --------------------------------------------------------------------------- queries

def find_node(status, name):
    """The node dict called ``name`` (exact name first, then any case); None if unknown."""
    if name is None:
        return None
    for node in status.get("nodes", []):
        if node["name"] == name:
            return node
    for node in status.get("nodes", []):
        if node["name"].lower() == str(name).lower():
            return node
    return None


def _same(a, b):
    return a is not None and b is not None and a.lower() == b.lower()


def group_members(status, group):
    """The resource dicts of ``group`` in order; a lone resource whose id is ``group`` when the
    cluster's "group" is a single primitive. Empty when unknown."""
    return [r for r in status.get("resources", [])
            if r.get("group") == group or r.get("id") == group]


def group_node(status, group):
    """The node on which every member of ``group`` is started (settled), else None.

    None when the group is unknown, any member is stopped or still in transition (Starting,
    Stopping, Migrating...), active on several nodes, or the members are split between nodes: a
    move is done only once this names the new node. A member shown FAILED on that node still
    counts as there (Pacemaker is recovering it in place); ``is_healthy`` tells the difference.
    """
    members = group_members(status, group)
    if not members:
        return None
    where = None
    for res in members:
        if res.get("role") not in ACTIVE_ROLES or not res.get("node"):
            return None
        if len(res.get("nodes") or [res["node"]]) > 1:
            return None
        if where is None:
            where = res["node"]
        elif not _same(where, res["node"]):
            return None
    return where


def node_state(status, name):
    """``online`` / ``standby`` / ``offline`` for node ``name`` (any case); None if unknown."""
    node = find_node(status, name)
    return node["state"] if node else None


def running_on(status, node):
    """The resources that occupy ``node`` (settled or in transition)."""
    return [r for r in status.get("resources", [])
            if any(_same(node, n) for n in (r.get("nodes") or [r.get("node")]))
            and r.get("role") in PRESENT_ROLES]


def others_online(status, node):
    """Names of the online nodes other than ``node``."""
    return [n["name"] for n in status.get("nodes", [])
            if not _same(n["name"], node) and n["state"] == "online"]


def failed_for(status, resource=None, node=None):
    """Failed actions, optionally only those of ``resource`` (a primitive or a group id)
    and/or on ``node``."""
    members = None
    if resource is not None:
        members = {r["id"] for r in group_members(status, resource)} or {resource}
    out = []
    for fa in status.get("failed_actions", []):
        if members is not None and fa.get("resource") not in members:
            continue
        if node is not None and not _same(fa.get("node"), node):
            continue
        out.append(fa)
    return out


def disabled(res):
    """True when RES was stopped on purpose (target-role Stopped): not a failure."""
    return str(res.get("target_role") or "").lower() == "stopped"


def problems(status, group=None):
    """Human-readable list of what is wrong (empty when nothing is): the cluster's flags,
    nodes, group, resources (unmanaged, in maintenance, disabled, blocked), bans, failures."""
    out = []
    if status.get("maintenance_mode"):
        out.append("cluster maintenance-mode is on (Pacemaker neither starts, stops nor "
                   "monitors anything)")
    if status.get("stop_all_resources"):
        out.append("cluster stop-all-resources is on")
    if not status.get("nodes"):
        out.append("crm_mon shows no node (filtered view, or the stack is starting)")
    for node in status.get("nodes", []):
        if node.get("unclean"):
            out.append("node %s is UNCLEAN" % node["name"])
        elif node["state"] != "online":
            out.append("node %s is %s" % (node["name"], node["state"]))
        if node.get("maintenance"):
            out.append("node %s is in maintenance" % node["name"])
    if status.get("quorum") is False:
        out.append("partition without quorum")
    resources = group_members(status, group) if group else status.get("resources", [])
    if group and not resources:
        out.append("group %s not found" % group)
    elif group and group_node(status, group) is None:
        places = ", ".join("%s %s%s" % (r["id"], r.get("role"),
                                       " " + r["node"] if r.get("node") else "")
                           for r in resources)
        out.append("group %s is not running on one node (%s)" % (group, places))
    for res in resources:
        if res.get("failed"):
            out.append("resource %s FAILED on %s" % (res["id"], res.get("node")))
        if res.get("blocked"):
            out.append("resource %s is BLOCKED (a failed stop: Pacemaker will not touch it)"
                       % res["id"])
        if res.get("maintenance"):
            out.append("resource %s is in maintenance (unmanaged)" % res["id"])
        elif not res.get("managed", True) and not status.get("maintenance_mode"):
            out.append("resource %s is unmanaged" % res["id"])
        if disabled(res):
            out.append("resource %s is disabled (target-role Stopped)" % res["id"])
    for ban in status.get("bans", []):
        if group is None or ban.get("resource") in ({r["id"] for r in resources} | {group}):
            out.append("constraint %s keeps %s off %s" % (ban.get("id"), ban.get("resource"),
                                                         ban.get("node")))
    for fa in failed_for(status, group) if group else status.get("failed_actions", []):
        out.append("failed action: %s %s on %s (rc=%s): %s" % (
            fa.get("resource"), fa.get("operation"), fa.get("node"), fa.get("rc"),
            fa.get("reason")))
    return out


def is_healthy(status, group):
    """True when ``group`` runs on one online (not standby) node, no member failed or
    unmanaged, and no failed action names a member."""
    where = group_node(status, group)
    if where is None:
        return False
    node = find_node(status, where)
    if node is None or node["state"] != "online" or node.get("unclean"):
        return False
    for res in group_members(status, group):
        if res.get("failed") or not res.get("managed", True):
            return False
    return not failed_for(status, group)


def _score(raw):
    raw = str(raw or "0").strip().upper()
    if raw in ("INFINITY", "+INFINITY"):
        return 1000000
    if raw == "-INFINITY":
        return -1000000
    try:
        return int(raw)
    except ValueError:
        return 0


def cli_constraints(constraints_xml):
    """Pure: the location constraints `crm_resource --move/--ban` (pcs resource move/ban, crm
    resource move/ban) left in the CIB: ids ``cli-prefer-*`` and ``cli-ban-*``.

    Returns [{"id", "resource", "node", "score", "kind": "move" | "ban"}]; [] when none or
    the XML is empty; ValueError when it is not XML."""
    text = (constraints_xml or "").strip()
    if not text:
        return []
    try:
        root = ET.fromstring(text[text.find("<"):])
    except ET.ParseError as exc:
        raise ValueError("CIB constraints are not XML: %s" % exc) from None
    out = []
    for loc in root.iter("rsc_location"):
        cid = loc.get("id") or ""
        if not (cid.startswith("cli-prefer-") or cid.startswith("cli-ban-")):
            continue
        node = loc.get("node")
        score = loc.get("score")
        if node is None:  # a rule form (crm_resource --move --lifetime): the node is in it
            expr = loc.find(".//expression[@attribute='#uname']")
            node = expr.get("value") if expr is not None else None
            rule = loc.find("rule")
            score = rule.get("score") if rule is not None else score
        out.append({"id": cid, "resource": loc.get("rsc"), "node": node,
                    "score": _score(score),
                    "kind": "move" if cid.startswith("cli-prefer-") else "ban"})
    return out
