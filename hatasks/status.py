"""One screen of everything: both Pacemaker clusters, pgpool's backends and each PostgreSQL.

The facts are collected from all hosts in parallel (crm_mon of every cluster, SHOW pool_nodes
through the DB VIP, a direct connection to each backend); `--format json` gives one document.
"""

import queue
import re
import threading
import time

from hatasks import crm, crmmon, hb, journal, output, pg, pgpool, remote, watch
from hatasks.base import helps, task
from hatasks.errors import HaError, StateError, UnreachableError

#: seconds granted beyond the connect timeout before status gives up on a read
GRACE = 3
#: --cluster value naming every cluster of the inventory (read-only tasks)
ALL = "all"


def chosen_names(ctx, cluster):
    """The cluster names a read-only task covers: every cluster of the inventory for None or
    ``all``, else the one named (validated; a kind such as ``db`` works when it is unique)."""
    inv = remote.inventory(ctx)
    if cluster is None or cluster == ALL:
        return hb.cluster_names(inv)
    remote.check_value("cluster", cluster)
    return [inv.cluster(cluster).name]


def collectors(ctx, cluster=None):
    """The independent probes of ``status``: [(key, callable)], key = (cluster, part)."""
    inv = remote.inventory(ctx)
    names = chosen_names(ctx, cluster)
    jobs = []
    for name in names:
        c = inv.cluster(name)
        jobs.append(((name, "hb"), lambda name=name: hb.crm_status_with_fencing(ctx, name)))
        # who holds the operation lock (in the cluster's CIB too: an ssh read, so in parallel)
        jobs.append(((name, "lock"), lambda name=name: {"held": journal.lock_held(ctx, name)}))
        for h in c.hosts:
            jobs.append(((name, f"ssh:{h.name}"), lambda h=h: _reach(ctx, h)))
        jobs.append(((name, "constraints"), lambda c=c: _constraints(ctx, c)))
        if c.kind == "db":
            jobs.append(((name, "pgpool"), lambda name=name: pgpool.status(ctx, name)))
            for h in c.hosts:  # one job per backend: a dead host never hides the other
                jobs.append(((name, f"pg:{h.name}"), lambda h=h: backend(ctx, h)))
    return names, jobs


def backend(ctx, h):
    """One backend directly (pg.status's row): on pg_port, else on the port it really runs on
    (a resync's maintenance start) with a note; {"status": "down", "reason"} when neither."""
    port = int(h.vars.get("pg_port") or 5432)
    try:
        return pg.backend_info(ctx, h)
    except HaError as first:
        down = {"host": h.name, "status": "down", "port": port, "version": None,
                "databases": [], "reason": first.message}
        try:
            st = pg.server_state(ctx, h)
            if not st["running"] or not st["port"] or st["port"] == port:
                return down
            info = pg.backend_info(ctx, h, st["port"])
        except HaError:
            return down
        info["note"] = (f"running on port {st['port']}, not pg_port {port}: applications and "
                        f"pgpool cannot reach it")
        return info


def _reach(ctx, h):
    """ssh to H answers (a connection opened, or cached): {"ok": True}; else UnreachableError."""
    remote.connection(ctx, h)
    return {"ok": True}


def _constraints(ctx, c):
    """The move/ban constraints, read on the first host of C that answers."""
    for h in c.hosts:
        try:
            found = crm.read_constraints(ctx, h)
        except HaError:
            continue
        if found is not None:
            return {"constraints": found}
    return {"error": "the CIB's constraints could not be read on any node"}


def _call(fn):
    try:
        return fn()
    except HaError as exc:
        return {"error": exc.message, "code": exc.code}


def deadline_seconds(ctx):
    """One deadline for every read of status: the connect timeout plus GRACE."""
    try:
        timeout = int(ctx.config.hatasks.connect_timeout)
    except (AttributeError, KeyError, TypeError, ValueError):
        timeout = 10
    return max(1, timeout) + GRACE


def run_jobs(jobs, deadline):
    """Run every job in a daemon thread; what has not answered after DEADLINE seconds is
    {"error": "no answer within ..."} (a dead host never holds status longer than that)."""
    box = queue.Queue()

    def one(key, fn):
        try:
            box.put((key, _call(fn)))
        except BaseException as exc:  # a bug: raised again in the caller's thread
            box.put((key, exc))

    for key, fn in jobs:
        threading.Thread(target=one, args=(key, fn), daemon=True).start()
    results, end = {}, time.monotonic() + deadline
    while len(results) < len(jobs):
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            key, value = box.get(timeout=left)
        except queue.Empty:
            break
        if isinstance(value, BaseException):
            raise value
        results[key] = value
    for key, _ in jobs:
        results.setdefault(key, {"error": f"no answer within {deadline:g}s",
                                 "code": HaError.UNREACHABLE})
    return results


def collect(ctx, cluster=None, parallel=True):
    """Every fact of ``status`` as one dict; ``parallel=False`` asks host after host (benchmarks)."""
    names, jobs = collectors(ctx, cluster)
    started = time.monotonic()
    if parallel:
        results = run_jobs(jobs, deadline_seconds(ctx))
    else:
        results = {key: _call(fn) for key, fn in jobs}
    inv = remote.inventory(ctx)
    data = {"clusters": {}, "summary": [], "problems": [], "unreachable": {}, "seconds": None}
    for name in names:
        c = inv.cluster(name)
        entry = {"kind": c.kind, "hosts": {}}
        # in the collectors' order (inventory order), not in the order the answers came
        mine = {part: results[(cname, part)] for (cname, part), _ in jobs if cname == name}
        for part, value in mine.items():
            if part == "lock":
                held = value.get("held")
                if held and not held.get("self"):
                    entry["operation"] = {k: held.get(k)
                                          for k in ("action", "user", "pid", "host", "since")}
            elif part.startswith("ssh:"):
                entry["hosts"][part[4:]] = value
                if "error" in value:
                    data["unreachable"][part[4:]] = value["error"]
            elif part.startswith("pg:"):
                if "error" in value:  # did not answer in time
                    port = int(inv.host(part[3:]).vars.get("pg_port") or 5432)
                    value = {"host": part[3:], "status": "down", "port": port, "version": None,
                             "databases": [], "reason": value["error"]}
                entry.setdefault("pg", {"cluster": name, "backends": []})["backends"].append(value)
            else:
                entry[part] = value
        data["clusters"][name] = entry
        found = problems(c, entry)
        silent = bool(mine) and all(is_timeout(v) for v in mine.values())
        if silent:  # nothing of this cluster answered by the deadline: one line says so
            found = [f"no answer within {deadline_seconds(ctx):g}s from any host of the "
                     f"cluster"]
        data["summary"].append({"cluster": name, "kind": c.kind, "healthy": not found,
                                "answered": not silent, "problems": found})
        data["problems"].extend(f"{name}: {p}" for p in found)
    data["healthy"] = not data["problems"]
    # risks that are not faults (the verdict stays healthy): a DB cluster without fencing
    data["warnings"] = [f"{name}: {e['hb']['fencing']['risk']}"
                        for name, e in data["clusters"].items()
                        if ((e.get("hb") or {}).get("fencing") or {}).get("risk")]
    data["seconds"] = round(time.monotonic() - started, 3)
    return data


def is_timeout(value):
    """True for run_jobs' placeholder of a job that did not answer by the deadline."""
    return isinstance(value, dict) and str(value.get("error", "")).startswith("no answer within")


def host_key_problem(why):
    return "host key" in (why or "")


def problems(c, entry):
    """What is wrong in one cluster's entry, as short sentences (empty when healthy)."""
    out = []
    op = entry.get("operation")
    if op:
        out.append(f"operation {op.get('action')} by {op.get('user')} (pid {op.get('pid')} on "
                   f"{op.get('host')}) since {op.get('since')} in progress")
    dead = {}
    for host, r in (entry.get("hosts") or {}).items():
        if "error" in r:
            dead[host] = r["error"]
            kind = ("HOST KEY problem, not a service failure" if host_key_problem(r["error"])
                    else "unreachable")
            out.append(f"{host} {kind}: {r['error']}")
    st = entry.get("hb") or {}
    if "error" in st:
        out.append(f"Pacemaker: {st['error']}")
    else:
        for host, why in (st.get("unanswered") or {}).items():
            if host not in dead:
                out.append(f"{host} did not answer: {why}")
        cons_ids = {x["id"] for x in (entry.get("constraints") or {}).get("constraints") or []}
        out.extend(p for p in crmmon.problems(st, c.vars.get("group"))
                   if not any(p.startswith(f"constraint {i} ") for i in cons_ids))
    cons = entry.get("constraints") or {}
    for x in cons.get("constraints") or []:
        out.append(f"constraint {x['id']} left by a {x['kind']}: {x['resource']} "
                   f"{'pinned on' if x['kind'] == 'move' else 'kept off'} {x['node']} "
                   f"(inv hb.clear --resource {x['resource']})")
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
                       for b in pgs.get("backends", [])
                       if b.get("status") != "up" and not host_key_problem(dead.get(b["host"])))
            for b in pgs.get("backends", []):
                if b.get("status") == "up" and b.get("port") and c.vars.get("pg_port") and \
                        str(b["port"]) != str(c.vars.get("pg_port")):
                    out.append(f"PostgreSQL on {b['host']} runs on port {b['port']}, not "
                               f"{c.vars.get('pg_port')} (left on a resync's port?)")
    return out


def summary_table(data):
    """One line per cluster: name, kind, healthy / UNHEALTHY / NO ANSWER, the first problem."""
    rows = []
    for line in data.get("summary") or []:
        found = line["problems"]
        state = ("healthy" if line["healthy"] else "NO ANSWER" if not line["answered"]
                 else "UNHEALTHY")
        first = found[0] if found else "-"
        if len(first) > 90:
            first = first[:87] + "..."
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        rows.append([line["cluster"], line["kind"], state, first + more])
    return output.render_table((["cluster", "kind", "state", "problem"], rows))


def steady(line):
    """A table line without the collection time (changes on every refresh: not marked)."""
    return re.sub(r"\(collected in [0-9.]+ s\)", "(collected)", line)


def _table(data):
    parts = []
    if data.get("summary"):
        healthy = sum(1 for line in data["summary"] if line["healthy"])
        parts.append(f"== {len(data['summary'])} cluster(s), {healthy} healthy\n"
                     + summary_table(data))
    for name, entry in data["clusters"].items():
        st = entry.get("hb") or {}
        if "error" in st:
            parts.append(f"== cluster {name}: Pacemaker: {st['error']}")
        else:
            one = {"clusters": [name], "views": {name: {
                "read_on": st.get("read_on"), "dc": st.get("dc"),
                "unanswered": st.get("unanswered") or {}, "quorum": st.get("quorum"),
                "maintenance_mode": st.get("maintenance_mode"),
                "stop_all_resources": st.get("stop_all_resources"),
                "stonith_enabled": st.get("stonith_enabled"), "bans": st.get("bans") or [],
                "fencing": st.get("fencing")}}}
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
    parts.append(f"== verdict (collected in {data['seconds']} s): {verdict}"
                 + "".join(f"\n  warning: {w}" for w in data.get("warnings") or []))
    return "\n\n".join(parts)


@task(optional=["watch_"],
      help=helps(None, {"cluster": "one cluster, or all (default: every cluster of the inventory)",
                        "format": True, "watch": True}))
def status(ctx, cluster=None, format=None, watch_=None):
    """Show everything on one screen: every cluster, pgpool's backends, each PostgreSQL.

    The runbook's crm_mon, `show pool_status` and `psql -h db01/-h db02` checks at once, asked
    of all hosts of all clusters in parallel under one deadline. The table starts with one line
    per cluster (healthy or its problem), details after. Exits 3 when something is not healthy
    (4 when a host does not answer); with --watch, 0 when left with Ctrl-C.
    """
    fmt = output.resolve_format(ctx, format)
    names = chosen_names(ctx, cluster)
    every = watch.seconds(watch_)
    if every is not None:
        def frame():
            data = collect(ctx, ALL if len(names) > 1 else names[0])
            return data, _table(data)

        watch.loop(frame, every, fmt, "hatasks status" + (f" --cluster {cluster}" if cluster
                                                          else ""), key=steady)
        return
    data = collect(ctx, ALL if len(names) > 1 else names[0])
    output.emit(data, fmt, table=_table)
    if data["unreachable"]:
        raise UnreachableError("not answering: " + "; ".join(
            f"{h}: {why}" for h, why in data["unreachable"].items()))
    if not data["healthy"]:
        raise StateError(f"not healthy: {len(data['problems'])} problem(s): "
                         + "; ".join(data["problems"]))
