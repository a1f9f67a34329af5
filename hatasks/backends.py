"""pgpool's backends as pgpool sees them: SHOW pool_nodes through the VIP.

A reader of its own, below the tools: stopping a backend, recording the newest data and
diagnosing a cluster all need pgpool's view without going through the pgpool tasks. What the
rows mean is ``hatasks.pool`` (pure).
"""

import ipaddress

from hatasks import checks, pool, remote
from hatasks.errors import HaError, StateError, UnreachableError


def pgpool_cluster(ctx, name="db"):
    """The inventory Cluster pgpool runs in (a DB cluster with a vip), validated.

    NAME None: the inventory's only DB cluster (the resync's default); with several (a fleet)
    UsageError asking for --cluster: a task never picks one cluster of many by itself."""
    return checks.cluster(ctx, name, "db",
                          missing="the inventory has no DB cluster",
                          wrong_kind="cluster {name} is a {kind} cluster; pgpool runs in a db "
                                     "cluster",
                          vip="cluster {name}: inventory var vip is not set")


def pgpool_port(c):
    """The port pgpool listens on (inventory var pgpool_port, default 9999)."""
    return int(c.vars.get("pgpool_port") or 9999)


def read_pool_nodes(ctx, cluster="db"):
    """SHOW pool_nodes through the VIP, asked from the first DB host that can reach it.

    Returns pool.parse_pool_nodes' dict (backends, degenerated, newest) plus "via" and
    "rows". UnreachableError (naming every host tried) when pgpool does not answer."""
    c = pgpool_cluster(ctx, cluster)
    vip, port = c.vars["vip"], pgpool_port(c)
    problems = []
    for h in c.hosts:
        try:
            rows = remote.sql_rows(ctx, h, "SHOW pool_nodes", port=port, target=vip)
        except HaError as exc:
            problems.append(exc.message)
            continue
        try:
            data = dict(pool.parse_pool_nodes(rows))
        except ValueError as exc:
            raise StateError(f"SHOW pool_nodes via {h.name} not understood: {exc}") from None
        data["via"] = h.name
        data["rows"] = rows
        return data
    raise UnreachableError(f"pgpool does not answer on {vip}:{port} ({'; '.join(problems)})")


def backend_status(ctx, host):
    """HOST's status in SHOW pool_nodes ("up"/"down"); None if pgpool does not answer."""
    try:
        data = read_pool_nodes(ctx, host.cluster)
    except HaError:
        return None
    for b in data.get("backends", []):
        nid = host.pgpool_node_id
        same_id = nid is not None and str(b.get("node_id")) == str(nid)
        if b.get("host") in (host.name, host.address) or same_id:
            return b.get("status")
    return None


def up(data):
    """The backends of a read_pool_nodes dict that are up."""
    return [b for b in data.get("backends", []) if b.get("status") == "up"]


def evidence(data):
    """What a newest-data record keeps of a read_pool_nodes dict (JSON-able)."""
    parts = [f"{b.get('host')}(node {b.get('node_id')}) {b.get('status')} {b.get('role') or ''}"
             .strip() for b in data.get("backends", [])]
    return {"source": f"SHOW pool_nodes via {data.get('via')}", "pool_nodes": "; ".join(parts),
            "degenerated": bool(data.get("degenerated"))}


def is_ip(name):
    """Pure: NAME is an IPv4 or IPv6 address literal."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def same_name(a, b):
    """Pure: pgpool's backend hostname A names the inventory's name or address B: equal
    ignoring case and a trailing dot, or a short name and a fully qualified one with the same
    first label (db01 and db01.example.com). Two different domains, or an address against a
    name, are not the same (nothing is resolved here)."""
    a, b = (str(x or "").strip().rstrip(".").lower() for x in (a, b))
    if not a or not b:
        return False
    if a == b:
        return True
    if is_ip(a) or is_ip(b) or ("." in a) == ("." in b):
        return False
    return a.split(".", 1)[0] == b.split(".", 1)[0]


def statuses(c, data):
    """Pure: {inventory host name: its status in SHOW pool_nodes DATA}, matched by the
    inventory's pgpool_node_id (None for a host pgpool does not list)."""
    by_id = {str(b.get("node_id")): b.get("status") for b in (data or {}).get("backends") or []}
    return {h.name: by_id.get(str(h.pgpool_node_id)) for h in c.hosts}


def id_disagreements(c, data):
    """Pure: where pgpool's node ids (SHOW pool_nodes hostname and port) and the inventory's
    pgpool_node_id disagree, one line per disagreement naming both; [] when they agree.

    A backend is a host when its hostname names the host's inventory name or address
    (`same_name`: short and fully qualified names match) and its port is the host's pg_port
    (default 5432)."""
    rows = data.get("backends", [])
    by_id = {str(b.get("node_id")): b for b in rows}

    def is_host(b, h):
        port = int(h.vars.get("pg_port") or 5432)
        return (any(same_name(b.get("host"), n) for n in (h.name, h.address))
                and str(b.get("port")) == str(port))

    def named(b):
        return f"{b.get('host')}:{b.get('port')}"

    lines = []
    for h in c.hosts:
        nid = h.pgpool_node_id
        if nid is None:
            continue
        b = by_id.get(str(nid))
        if b is None:
            lines.append(f"inventory: {h.name} is pgpool node {nid}; pgpool has no node {nid}")
        elif not is_host(b, h):
            lines.append(f"inventory: {h.name} is pgpool node {nid}; pgpool: node {nid} is "
                         f"{named(b)}")
    for b in rows:
        mine = [h for h in c.hosts if is_host(b, h)]
        if not mine:
            lines.append(f"pgpool: node {b.get('node_id')} is {named(b)}; the inventory has no "
                         f"host {b.get('host')} on port {b.get('port')} in cluster {c.name}")
        elif mine[0].pgpool_node_id is None:
            lines.append(f"pgpool: node {b.get('node_id')} is {named(b)}; the inventory gives "
                         f"{mine[0].name} no pgpool_node_id")
    return list(dict.fromkeys(lines))


def check_node_ids(c, data):
    """Refuse (StateError, exit 3) any decision by node id while pgpool and the inventory
    disagree on which backend is which node; returns DATA when they agree."""
    lines = id_disagreements(c, data)
    if lines:
        raise StateError("pgpool and the inventory disagree on the backends' node ids ("
                         + "; ".join(lines) + "); pgpool is the truth: fix pgpool_node_id in "
                         "the inventory; nothing was changed")
    return data
