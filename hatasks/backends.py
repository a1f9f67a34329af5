"""pgpool's backends as pgpool sees them: SHOW pool_nodes through the VIP.

A reader of its own, below the tools: stopping a backend, recording the newest data and
diagnosing a cluster all need pgpool's view without going through the pgpool tasks. What the
rows mean is ``hatasks.pool`` (pure).
"""

from hatasks import checks, pool, remote
from hatasks.errors import HaError, StateError, UnreachableError


def pgpool_cluster(ctx, name="db"):
    """The inventory Cluster pgpool runs in (a DB cluster with a vip), validated.

    NAME None: the inventory's first DB cluster (the resync's default)."""
    return checks.cluster(ctx, name, "db", first=True,
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
