"""Tasks about the inventory itself: ``inv inventory.check``."""

import os
import re

from hatasks import inventory, output
from hatasks.base import helps, task
from hatasks.errors import UsageError

#: var names whose values are never printed
_SECRET = re.compile(r"(pass(word|wd)?$|secret|token|private|_key$|^key$)", re.I)
#: vars that name a file (a libpq passfile, an ssh config): their path is not a secret
_NOT_SECRET = ("pgpass", "ssh_config")


def shown(key, value):
    """``value`` as printed for var ``key``: secrets are masked."""
    if key not in _NOT_SECRET and _SECRET.search(key):
        return "***"
    return value


def _path(ctx):
    try:
        value = ctx.config.hatasks.inventory
    except (AttributeError, KeyError):
        value = None
    return os.path.abspath(str(value or "hosts.ini"))


def resolved(inv):
    """The inventory as data: clusters (kind, hosts, vars), hosts, problems (strings)."""
    clusters = [
        {"name": c.name, "kind": c.kind, "hosts": c.host_names,
         "vars": {k: shown(k, v) for k, v in c.vars.items() if k != "cluster_kind"}}
        for c in inv.clusters.values()
    ]
    hosts = []
    for h in inv.hosts.values():
        cluster_vars = inv.clusters[h.cluster].vars if h.cluster in inv.clusters else {}
        hosts.append({
            "name": h.name, "cluster": h.cluster, "address": h.address, "port": h.port or 22,
            "user": h.user or "root", "pgpool_node_id": h.vars.get("pgpool_node_id"),
            # what this host sets differently from its cluster
            "vars": {k: shown(k, v) for k, v in h.vars.items()
                     if cluster_vars.get(k) != v and k not in (
                         "ansible_host", "ansible_port", "ansible_user", "pgpool_node_id",
                         "cluster_kind")},
        })
    return {"inventory": inv.path, "clusters": clusters, "hosts": hosts,
            "problems": [str(p) for p in inv.problems]}


def _table(data):
    out = []
    for c in data["clusters"]:
        out.append((f"cluster {c['name']} (kind {c['kind']}): {', '.join(c['hosts']) or 'no hosts'}",
                    c["vars"] or "(no vars)"))
    out.append(("hosts", (["host", "cluster", "address", "port", "user", "pgpool_node_id", "own vars"],
                          [[h["name"], h["cluster"] or "-", h["address"], h["port"], h["user"],
                            h["pgpool_node_id"], h["vars"]] for h in data["hosts"]])))
    problems = data["problems"]
    out.append((f"problems of {data['inventory']}: {len(problems) or 'none'}",
                "\n".join(problems) if problems else "(none)"))
    return out


@task(help=helps(None, {"format": True}))
def check(ctx, format=None):
    """Show the resolved inventory (clusters, hosts, their vars; secrets masked) and every
    problem in it; exit 2 when there is any."""
    fmt = output.resolve_format(ctx, format)
    inv = inventory.read(_path(ctx))
    data = resolved(inv)
    output.emit(data, fmt, table=_table)
    if inv.problems:
        n = len(inv.problems)
        raise UsageError(f"{inv.path}: {n} problem{'s' if n > 1 else ''} (listed above)")
