"""Pure parsers for the cluster manager's status: crm_mon output -> one dict.

No I/O here. ``parse_crm_mon_xml`` reads ``crm_mon -1 --output-as=xml`` (Pacemaker 2.x);
``parse_crm_mon_text`` reads the text screens of both Pacemaker 2.1 (``crm_mon -1``) and
Heartbeat 2.1's CRM as printed in the 2008 manual (``crm_mon -i 3``). Both return::

    {
      "source": "xml" | "text" | "text-2008",
      "dc": "db01" | None,            # current designated controller
      "quorum": True | False | None,  # None when the screen does not say (2008)
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

#: OCF exit codes by the names crm_mon prints ("returned 'not running'")
OCF_RC = {
    "ok": 0,
    "error": 1,
    "invalid parameter": 2,
    "unimplemented feature": 3,
    "insufficient privileges": 4,
    "not installed": 5,
    "not configured": 6,
    "not running": 7,
    "promoted": 8,
    "master": 8,
    "failed (promoted)": 9,
    "promoted (failed)": 9,
    "failed (master)": 9,
    "master (failed)": 9,
}

#: roles in which a resource instance is active on its node
ACTIVE_ROLES = ("Started", "Promoted", "Unpromoted", "Master", "Slave", "Starting",
                "Stopping", "Migrating", "Promoting", "Demoting")

_OPERATIONS = ("start", "stop", "monitor", "promote", "demote", "migrate_to", "migrate_from",
               "notify", "reload", "reload-agent", "meta-data", "validate-all", "cancel")
_OP_KEY_RE = re.compile(r"^(?P<resource>.+)_(?P<operation>%s)_(?P<interval>\d+)$"
                        % "|".join(re.escape(o) for o in _OPERATIONS))
_ROLE_WORDS = {
    "started": "Started", "stopped": "Stopped", "failed": "Started", "promoted": "Promoted",
    "unpromoted": "Unpromoted", "master": "Promoted", "slave": "Unpromoted",
    "starting": "Starting", "stopping": "Stopping", "migrating": "Migrating",
    "promoting": "Promoting", "demoting": "Demoting", "blocked": "Blocked",
}


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
            "groups": {}, "failed_actions": [], "fail_counts": []}


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
        })
    if result["dc"] is None:
        for node in result["nodes"]:
            if node["dc"]:
                result["dc"] = node["name"]

    resources_el = root.find("resources")
    if resources_el is not None:
        _xml_resources(resources_el, None, result["resources"])

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


def _xml_resources(parent, group, out):
    for child in parent:
        if child.tag == "resource":
            names = [n.get("name") for n in child.findall("node") if n.get("name")]
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
            })
            if len(names) > 1:
                out[-1]["multiple_active"] = True
        elif child.tag == "group":
            _xml_resources(child, child.get("id"), out)
        elif child.tag in ("clone", "bundle", "replica"):
            _xml_resources(child, group, out)


# --------------------------------------------------------------------------- text

_SECTION_RE = re.compile(
    r"^(Node List|Active Resources|Full List of Resources|Inactive Resources|"
    r"Failed Resource Actions|Failed actions|Failed Actions|Migration Summary|"
    r"Operations|Node Attributes|Tickets|Fencing History|Daemon Status|Cluster Summary)\s*:\s*$",
    re.I)
# 2008: "Node: db02 (b6587dd4-...): online"; 2.1 --show-detail: "* Node db01 (1): online, ..."
_NODE_2008_RE = re.compile(r"^Node:\s*(?P<name>\S+)\s+\((?P<uuid>[^)]*)\):\s*(?P<state>.+?)\s*$")
_NODE_21_RE = re.compile(r"^Node\s+(?P<name>[^\s:]+)(?:\s+\((?P<id>[^)]*)\))?:\s*"
                         r"(?P<state>.+?)\s*$")
_NODE_LIST_RE = re.compile(
    r"^(?P<kind>Online|OFFLINE|Standby|GuestOnline|RemoteOnline|RemoteOFFLINE|GuestOFFLINE|"
    r"Maintenance|Pending|UNCLEAN)\s*:\s*\[(?P<names>[^\]]*)\]\s*$")
_GROUP_RE = re.compile(r"^Resource Group:\s*(?P<id>[^\s:]+)\s*:?\s*(?P<flags>.*)$")
_CLONE_RE = re.compile(r"^(?:Clone Set|Master/Slave Set|Promotable Clone Set|Clone):\s*"
                       r"(?P<id>\S+)\s*\[(?P<prim>[^\]]+)\]")
_CLONE_LIST_RE = re.compile(r"^(?P<role>Started|Stopped|Promoted|Unpromoted|Masters|Slaves|"
                            r"Stopped \(disabled\))\s*:\s*\[(?P<names>[^\]]*)\]")
_RESOURCE_RE = re.compile(r"^(?P<id>[^\s(]+)\s+\((?P<agent>[^)]*)\)\s*:\s*(?P<rest>.*)$")
_DC_RE = re.compile(r"Current DC:\s*(?P<name>\S+)(?P<rest>.*)$")
# 2008 and 2.0: "resource_pg_start_0 (node=db01, call=13, rc=1): Error"
_FAIL_OLD_RE = re.compile(r"^(?P<key>\S+)\s+\((?P<fields>[^)]*)\)\s*:\s*(?P<reason>.*)$")
# 2.1 detail: "pgpool_monitor_10000 on db01 'not running' (7): call=4, status='complete', ..."
_FAIL_DETAIL_RE = re.compile(
    r"^(?P<key>\S+)\s+on\s+(?P<node>\S+)\s+'(?P<exitstatus>[^']*)'\s+\((?P<rc>-?\d+)\)\s*:\s*"
    r"(?P<fields>.*)$")
# 2.1 friendly: "pgpool 10s-interval monitor on db02 returned 'not running' (why) at DATE"
#               "pgpool start on db01 could not be executed (Timed Out: why) at DATE after 1m"
_FAIL_FRIENDLY_RE = re.compile(
    r"^(?P<rsc>\S+)\s+(?:(?P<interval>\S+)-interval\s+)?(?P<op>.+?)\s+on\s+(?P<node>\S+)\s+"
    r"(?:returned\s+'(?P<exitstatus>[^']*)'(?:\s+\((?P<exitreason>.*?)\))?"
    r"|could not be executed\s+\((?P<status>[^:)]*)(?::\s*(?P<why>.*?))?\))"
    r"(?:\s+at\s+(?P<at>.+?))?(?:\s+after\s+(?P<after>\S+))?\s*$")
_MIGRATION_RE = re.compile(r"^(?P<rsc>[^\s:]+):\s+(?P<fields>.*\bfail-count=.*)$")
_FIELD_RE = re.compile(r"([\w-]+)=('([^']*)'|\S+?)(?:,|\s|$)")

_READABLE_OPS = {"monitor": "monitor", "start": "start", "stop": "stop", "promote": "promote",
                 "demote": "demote", "migrate to": "migrate_to", "migrate from": "migrate_from",
                 "probe": "monitor", "notify": "notify", "reload": "reload"}


def _clean(line):
    """Strip list bullets, Markdown bold from the manual's conversion, and outer blanks."""
    line = line.replace("**", "").rstrip()
    stripped = line.lstrip()
    if stripped.startswith("* "):
        stripped = stripped[2:]
    return stripped.strip()


def _node_from_desc(name, desc):
    """Flags from a node's state words: ``online``, ``OFFLINE``, ``standby (with active
    resources)``, ``UNCLEAN (offline)``, ``pending``, ``maintenance``, ``OFFLINE (standby)``."""
    d = desc.strip().lower()
    unclean = "unclean" in d
    pending = "pending" in d
    if "offline" in d:
        online = False
    elif "online" in d:
        online = True
    else:
        online = not (pending or unclean)
    standby = "standby" in d
    node = {
        "name": name,
        "state": _state(online, standby, unclean, pending),
        "online": online,
        "standby": standby,
        "maintenance": "maintenance" in d,
        "unclean": unclean,
        "pending": pending,
        "dc": False,
        "raw_state": desc.strip(),
    }
    if "with active resources" in d:
        node["standby_with_resources"] = True
    return node


def _parse_role(rest):
    """``Started db01 (unmanaged)`` -> role, node, failed, managed, flags."""
    flags = [f.strip().lower() for f in re.findall(r"\(([^)]*)\)", rest)]
    words = re.sub(r"\([^)]*\)", " ", rest).split()
    role, node, failed = None, None, False
    if words:
        first = words[0].lower()
        if first == "failed":
            failed = True
            role = "Started"
            if len(words) > 1 and words[1].lower() in _ROLE_WORDS and words[1].lower() != "failed":
                role = _ROLE_WORDS[words[1].lower()]
                words = words[1:]
        else:
            role = _ROLE_WORDS.get(first, words[0])
        if len(words) > 1:
            node = words[1]
        if any(w.upper() == "FAILED" for w in words[2:]):
            failed = True
    if role == "Stopped":
        node = None
    managed = not any("unmanaged" in f for f in flags)
    return role, node, failed, managed, flags


def parse_crm_mon_text(text):
    """Parse a crm_mon text screen (Pacemaker 2.1 ``crm_mon -1`` or Heartbeat 2.1 of 2008)."""
    if text is None or not str(text).strip():
        raise ValueError("crm_mon output is empty (is the cluster stack running on that host?)")
    lines = str(text).splitlines()
    is_2008 = any(_NODE_2008_RE.match(_clean(ln)) for ln in lines)
    result = _empty("text-2008" if is_2008 else "text")
    nodes = {}
    node_order = []
    section = None
    group = None
    group_indented = None
    clone = None
    migration_node = None

    def add_node(node):
        if node["name"] not in nodes:
            node_order.append(node["name"])
            nodes[node["name"]] = node
        else:
            nodes[node["name"]].update(node)

    for raw in lines:
        if not raw.strip():
            continue
        line = _clean(raw)
        indent = len(raw) - len(raw.lstrip())
        if line.startswith(("Connection to cluster failed", "crm_mon: Connection")) or \
                re.match(r"^(crm_mon: )?[Ee]rror: Could not connect", line):
            raise ValueError("crm_mon could not reach the cluster: %s" % line)

        m = _DC_RE.search(line)
        if m and line.lstrip("* ").startswith("Current DC"):
            name = m.group("name")
            result["dc"] = None if name.upper() == "NONE" else name
            rest = m.group("rest").lower()
            if "without quorum" in rest:
                result["quorum"] = False
            elif "with quorum" in rest:
                result["quorum"] = True
            continue

        m = _SECTION_RE.match(line)
        if m:
            title = m.group(1).lower()
            section = {"node list": "nodes", "active resources": "resources",
                       "full list of resources": "resources", "inactive resources": "resources",
                       "failed resource actions": "failed", "failed actions": "failed",
                       "migration summary": "migration"}.get(title, "other")
            group = None
            clone = None
            continue

        m = _NODE_2008_RE.match(line)
        if m:
            add_node(_node_from_desc(m.group("name"), m.group("state")))
            group = None
            section = "nodes"
            continue

        m = _GROUP_RE.match(line)
        if m:
            group = m.group("id")
            group_indented = None
            clone = None
            if section not in ("resources",):
                section = "resources"
            continue

        if section == "nodes" or (section is None and not is_2008):
            m = _NODE_LIST_RE.match(line)
            if m:
                kind = m.group("kind").lower()
                for name in m.group("names").split():
                    online = kind in ("online", "guestonline", "remoteonline", "standby",
                                      "maintenance")
                    add_node({
                        "name": name,
                        "state": _state(online, kind == "standby", kind == "unclean",
                                        kind == "pending"),
                        "online": online,
                        "standby": kind == "standby",
                        "maintenance": kind == "maintenance",
                        "unclean": kind == "unclean",
                        "pending": kind == "pending",
                        "dc": False,
                        "raw_state": m.group("kind"),
                    })
                continue
            m = _NODE_21_RE.match(line)
            if m and section == "nodes":
                desc = m.group("state").split(",")[0]
                node = _node_from_desc(m.group("name"), desc)
                if m.group("id"):
                    node["id"] = m.group("id")
                add_node(node)
                continue

        if section == "failed":
            fa = _text_failed_action(line)
            if fa is not None:
                result["failed_actions"].append(fa)
            continue

        if section == "migration":
            m = re.match(r"^Node:?\s+(?P<name>[^\s:]+):?\s*$", line)
            if m:
                migration_node = m.group("name")
                continue
            m = _MIGRATION_RE.match(line)
            if m:
                fields = _fields(m.group("fields"))
                result["fail_counts"].append({
                    "resource": m.group("rsc"),
                    "node": migration_node,
                    "fail_count": _fail_count(fields.get("fail-count")),
                    "last_failure": fields.get("last-failure"),
                })
            continue

        if section == "resources" or is_2008:
            m = _CLONE_RE.match(line)
            if m:
                clone = m.group("prim").strip()
                group = None
                continue
            if clone:
                m = _CLONE_LIST_RE.match(line)
                if m:
                    role = m.group("role").split()[0]
                    role = {"Masters": "Promoted", "Slaves": "Unpromoted"}.get(role, role)
                    for name in m.group("names").split():
                        result["resources"].append({
                            "id": clone, "group": None,
                            "node": None if role == "Stopped" else name,
                            "nodes": [] if role == "Stopped" else [name],
                            "role": role, "agent": None, "failed": False, "managed": True})
                    continue
            m = _RESOURCE_RE.match(line)
            if m:
                role, node, failed, managed, flags = _parse_role(m.group("rest"))
                member_group = group
                if group is not None and is_2008:
                    # 2008 screens indent group members; a primitive at column 0 after
                    # indented members is not in the group (the manual's conversion lost the
                    # indentation of some screens entirely, hence "after indented members").
                    if group_indented is None:
                        group_indented = indent > 0
                    elif group_indented and indent == 0:
                        group = member_group = None
                result["resources"].append({
                    "id": m.group("id"),
                    "group": member_group,
                    "node": node,
                    "nodes": [node] if node else [],
                    "role": role,
                    "agent": m.group("agent"),
                    "failed": failed,
                    "managed": managed,
                    "unclean": any("unclean" in f for f in flags),
                })
                continue
            if line.lower().startswith("no active resources"):
                continue

    for name in node_order:
        result["nodes"].append(nodes[name])
    if result["dc"]:
        for node in result["nodes"]:
            node["dc"] = node["name"] == result["dc"]
    if not result["nodes"] and not result["resources"] and not result["failed_actions"]:
        raise ValueError("no crm_mon node, resource or failed action found in the text: %r"
                         % str(text).strip()[:120])
    return _finish(result)


def _fields(text):
    out = {}
    for m in _FIELD_RE.finditer(text):
        out[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(2)
    return out


def _text_failed_action(line):
    m = _FAIL_DETAIL_RE.match(line)
    if m:
        rsc, op, interval = split_op_key(m.group("key"))
        fields = _fields(m.group("fields"))
        return {
            "resource": rsc, "node": m.group("node"), "operation": op,
            "rc": int(m.group("rc")),
            "reason": _reason(m.group("exitstatus"), fields.get("exitreason"),
                              fields.get("status")),
            "exitstatus": m.group("exitstatus"), "exitreason": fields.get("exitreason", ""),
            "status": fields.get("status"), "interval": interval,
            "call": _int_or_none(fields.get("call")),
            "last_rc_change": fields.get("last-rc-change"), "op_key": m.group("key"),
        }
    m = _FAIL_OLD_RE.match(line)
    if m and "=" in m.group("fields"):
        rsc, op, interval = split_op_key(m.group("key"))
        fields = _fields(m.group("fields"))
        reason = m.group("reason").strip()
        status = fields.get("status")
        return {
            "resource": rsc, "node": fields.get("node"), "operation": op,
            "rc": _int_or_none(fields.get("rc")),
            "reason": reason or status or "",
            "exitstatus": reason, "exitreason": "",
            "status": status, "interval": interval,
            "call": _int_or_none(fields.get("call")),
            "last_rc_change": fields.get("last-rc-change"), "op_key": m.group("key"),
        }
    m = _FAIL_FRIENDLY_RE.match(line)
    if m:
        op = _READABLE_OPS.get(m.group("op").strip().lower(), m.group("op").strip().lower())
        exitstatus = m.group("exitstatus")
        status = m.group("status")
        why = m.group("exitreason") if exitstatus is not None else m.group("why")
        interval = _parse_interval(m.group("interval")) if m.group("interval") else 0
        return {
            "resource": m.group("rsc"), "node": m.group("node"), "operation": op,
            "rc": OCF_RC.get((exitstatus or "").lower()) if exitstatus is not None else None,
            "reason": _reason(exitstatus, why, status or "complete"),
            "exitstatus": exitstatus, "exitreason": why or "",
            "status": status or "complete", "interval": interval,
            "call": None, "last_rc_change": m.group("at"),
            "op_key": "%s_%s_%s" % (m.group("rsc"), op, interval),
        }
    return None


# --------------------------------------------------------------------------- helpers

def _find_node(status, name):
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
    """The resource dicts of ``group``, in order (empty when the group is unknown)."""
    return [r for r in status.get("resources", []) if r.get("group") == group]


def group_node(status, group):
    """Where ``group`` runs: the one node on which every member is active, else None.

    None when the group is unknown, any member is stopped, active on several nodes, or the
    members are split between nodes. A member shown FAILED on that node still counts as there
    (Pacemaker is recovering it in place); ``is_healthy`` tells the difference.
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
    node = _find_node(status, name)
    return node["state"] if node else None


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


def problems(status, group=None):
    """Human-readable list of what is wrong (empty when nothing is): nodes, group, failures."""
    out = []
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
        if not res.get("managed", True):
            out.append("resource %s is unmanaged" % res["id"])
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
    node = _find_node(status, where)
    if node is None or node["state"] != "online" or node.get("unclean"):
        return False
    for res in group_members(status, group):
        if res.get("failed") or not res.get("managed", True):
            return False
    return not failed_for(status, group)
