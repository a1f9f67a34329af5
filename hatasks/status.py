"""One screen of everything: both Pacemaker clusters, pgpool's backends and each PostgreSQL.

The facts are collected from all hosts in parallel (crm_mon of every cluster, SHOW pool_nodes
through the DB VIP, a direct connection to each backend); `--format json` gives one document.
"""

import time
from concurrent.futures import ThreadPoolExecutor

from hatasks import crm, crmmon, hb, output, pg, pgpool, remote
from hatasks.base import task
from hatasks.errors import HaError, StateError


def collectors(ctx, cluster=None):
    """The independent probes of ``status``: [(key, callable)], key = (cluster, part)."""
    inv = remote.inventory(ctx)
    names = [cluster] if cluster else hb.cluster_names(inv)
    jobs = []
    for name in names:
        c = inv.cluster(name)
        jobs.append(((name, "hb"), lambda name=name: crm.crm_status(ctx, name)))
        if c.kind == "db":
            jobs.append(((name, "pgpool"), lambda name=name: pgpool.status(ctx, name)))
            jobs.append(((name, "pg"), lambda name=name: pg.status(ctx, name)))
    return names, jobs


def _call(fn):
    try:
        return fn()
    except HaError as exc:
        return {"error": exc.message}


def collect(ctx, cluster=None, parallel=True):
    """Every fact of ``status`` as one dict; ``parallel=False`` asks host after host (benchmarks)."""
    names, jobs = collectors(ctx, cluster)
    started = time.monotonic()
    if parallel:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [(key, pool.submit(_call, fn)) for key, fn in jobs]
            results = {key: f.result() for key, f in futures}
    else:
        results = {key: _call(fn) for key, fn in jobs}
    inv = remote.inventory(ctx)
    data = {"clusters": {}, "problems": [], "seconds": None}
    for name in names:
        c = inv.cluster(name)
        entry = {"kind": c.kind}
        for (cname, part), value in results.items():
            if cname == name:
                entry[part] = value
        data["clusters"][name] = entry
        data["problems"].extend(f"{name}: {p}" for p in problems(c, entry))
    data["healthy"] = not data["problems"]
    data["seconds"] = round(time.monotonic() - started, 3)
    return data


def problems(c, entry):
    """What is wrong in one cluster's entry, as short sentences (empty when healthy)."""
    out = []
    st = entry.get("hb") or {}
    if "error" in st:
        out.append(f"Pacemaker: {st['error']}")
    else:
        for host, why in (st.get("unanswered") or {}).items():
            out.append(f"{host} did not answer: {why}")
        out.extend(crmmon.problems(st, c.vars.get("group")))
    pool = entry.get("pgpool")
    if pool is not None:
        if "error" in pool or not pool.get("reachable"):
            rec = pool.get("recorded")
            last = (f"; last newest-data record: {rec.get('newest')} at {rec.get('ts')}" if rec
                    else "; no newest-data record")
            out.append(f"pgpool does not answer: {pool.get('error')}{last}")
        elif pool.get("degenerated"):
            down = [b["host"] for b in pool.get("backends", []) if b.get("status") != "up"]
            out.append(f"pgpool degenerated: backend {', '.join(down)} down, newest data on "
                       f"{pool.get('newest')} (resync needed)")
    pgs = entry.get("pg")
    if pgs is not None:
        if "error" in pgs:
            out.append(f"PostgreSQL: {pgs['error']}")
        else:
            out.extend(f"PostgreSQL on {b['host']} is down: {b.get('reason')}"
                       for b in pgs.get("backends", []) if b.get("status") != "up")
    return out


def _table(data):
    parts = []
    for name, entry in data["clusters"].items():
        st = entry.get("hb") or {}
        if "error" in st:
            parts.append(f"== cluster {name}: Pacemaker: {st['error']}")
        else:
            one = {"clusters": [name], "views": {name: {"read_on": st.get("read_on"),
                                                        "dc": st.get("dc"),
                                                        "unanswered": st.get("unanswered") or {}}}}
            for key in ("nodes", "resources", "failed_actions"):
                one[key] = [dict(item, cluster=name) for item in st.get(key, [])]
            parts.append(hb.status_table(one))
        pool = entry.get("pgpool")
        if pool is not None:
            if "error" in pool:
                parts.append(f"== {name}: pgpool: {pool['error']}")
            else:
                parts.append(f"== {name}: pgpool\n" + output.render(pool, "table", pgpool.status_table))
        pgs = entry.get("pg")
        if pgs is not None:
            if "error" in pgs:
                parts.append(f"== {name}: PostgreSQL: {pgs['error']}")
            else:
                parts.append(f"== {name}: PostgreSQL\n" + output.render_table(pg.status_table(pgs)))
    verdict = ("healthy" if data["healthy"]
               else "PROBLEMS:\n" + "\n".join(f"  - {p}" for p in data["problems"]))
    parts.append(f"== verdict (collected in {data['seconds']} s): {verdict}")
    return "\n\n".join(parts)


@task(help={"cluster": "one cluster only (default: every cluster of the inventory)",
            "format": "table or json"})
def status(ctx, cluster=None, format=None):
    """Show everything on one screen: both clusters, pgpool's backends, each PostgreSQL.

    The runbook's crm_mon, `show pool_status` and `psql -h db01/-h db02` checks at once,
    asked of all hosts in parallel. Exits 3 when something is not healthy.
    """
    fmt = output.resolve_format(ctx, format)
    if cluster is not None:
        remote.check_value("cluster", cluster)
        remote.inventory(ctx).cluster(cluster)
    data = collect(ctx, cluster)
    output.emit(data, fmt, table=_table)
    if not data["healthy"]:
        raise StateError(f"not healthy: {len(data['problems'])} problem(s): "
                         + "; ".join(data["problems"]))
