"""The operator's view of the operation lock kept in the cluster: ``lock.show``, ``lock.break``.

``lock.show`` reads every store of a cluster's lock (the CIB, the file on each host; see
``hatasks.lock``) and says who holds it and how long the lease has left. ``lock.break`` removes
it whoever holds it, for the case the lease cannot settle (a holder that renews but is known to
be stuck): it is journaled, asks for confirmation on a terminal and needs ``--yes`` without one.
"""

import sys

from hatasks import checks, journal, lock, output, remote
from hatasks.base import helps, task
from hatasks.errors import HaError

_COLUMNS = ("cluster", "store", "state", "user", "host", "pid", "action", "since", "lease left")


def _clusters(ctx, cluster):
    """The clusters named by --cluster: one, or every cluster of the inventory for None/"all"."""
    inv = remote.inventory(ctx)
    if cluster in (None, "", "all"):
        return list(inv.clusters.values())
    return [checks.cluster(ctx, cluster)]


def show(ctx, cluster=None):
    """{cluster name: [store rows]} for the clusters named (all by default)."""
    if not lock.enabled(ctx):
        raise HaError("hatasks.cluster_state is off: the lock is kept on this admin host only"
                      " (see `inv history`)", HaError.USAGE)
    names = [c.name for c in _clusters(ctx, cluster)]
    found = remote.probe_many(ctx, names, lambda name: lock.show(ctx, name))
    return {name: (rows.message if isinstance(rows, HaError) else rows)
            for name, rows in found.items()}


def _table(data):
    rows = []
    for name, stores in data.items():
        if isinstance(stores, str):
            rows.append([name, "-", "error", stores, "", "", "", "", ""])
            continue
        for s in stores:
            left = s.get("left") if s.get("state") in ("held", "expired", "dead") else None
            rows.append([name, s.get("store"), s.get("state"), s.get("user"), s.get("host"),
                         s.get("pid"), s.get("action"), s.get("since"),
                         "" if left is None else f"{left}s"])
    return (list(_COLUMNS), rows)


@task(name="show", help=helps(None, {"cluster": "one cluster, or all (default)", "format": True}))
def show_task(ctx, cluster=None, format=None):
    """Show who holds each cluster's operation lock (the CIB and the file on each host)."""
    fmt = output.resolve_format(ctx, format)
    output.emit(show(ctx, cluster), fmt, table=_table)


def break_(ctx, cluster, yes=False):
    """Remove CLUSTER's lock from every store, journaled. Returns what the stores held."""
    c = checks.cluster(ctx, cluster)
    if not lock.enabled(ctx):
        raise HaError("hatasks.cluster_state is off: there is no lock in the cluster to break",
                      HaError.USAGE)
    before = lock.show(ctx, c.name)
    held = [s for s in before if s.get("state") in ("held", "expired", "dead")]
    who = "; ".join(f"{s['store']}: {s.get('user')} (pid {s.get('pid')} on {s.get('host')})"
                    f" running {s.get('action')}" for s in held) or "nobody"
    if remote.is_dry(ctx):
        print(f"[dry] would break the lock of cluster {c.name} (held by {who})", flush=True)
        lock.break_lock(ctx, c.name)
        return before
    jr = journal.Journal(ctx)
    if not yes:
        if not sys.stdin or not sys.stdin.isatty():
            jr.write("refused", c.name, "lock.break", {}, message="no terminal to confirm and no --yes")
            raise HaError(f"refusing to break the lock of cluster {c.name} without confirmation:"
                          " no terminal; run again with --yes", HaError.REFUSED)
        print(f"About to break the lock of cluster {c.name}, held by {who}", flush=True)
        try:
            answer = input("Proceed? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            jr.write("refused", c.name, "lock.break", {}, message="not confirmed by the operator")
            raise HaError(f"lock.break on cluster {c.name}: not confirmed", HaError.REFUSED)
    lock.break_lock(ctx, c.name)
    after = [s for s in lock.show(ctx, c.name) if s.get("state") in ("held", "expired", "dead")]
    jr.write("note", c.name, "lock.break", {}, message=f"broke the lock held by {who}",
             data={"before": held, "left": after})
    if after:
        raise HaError(f"the lock of cluster {c.name} is still held in "
                      f"{', '.join(s['store'] for s in after)}", HaError.NOT_CONVERGED)
    print(f"lock of cluster {c.name} broken (was held by {who})", flush=True)
    return before


@task(name="break", help=helps(None, {"cluster": "the cluster whose lock to remove",
                          "yes": True}))
def break_task(ctx, cluster, yes=False):
    """Remove a cluster's operation lock whoever holds it (journaled; asks first)."""
    break_(ctx, cluster, yes=yes)
