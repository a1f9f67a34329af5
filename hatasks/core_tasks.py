"""Tasks about hatasks itself: the audit history."""

from hatasks import checks, journal, output, remote
from hatasks.base import task

_COLUMNS = ("ts", "user", "cluster", "action", "event", "detail")


def _detail(rec):
    if rec.get("event") == "newest":
        return f"newest={rec.get('newest')} ({rec.get('evidence')})"
    if rec.get("event") == "checkpoint":
        return f"step {rec.get('step')}"
    if rec.get("event") == "step":
        return f"begins {rec.get('step')}"
    if rec.get("event") == "start":
        args = rec.get("args") or {}
        return " ".join(f"{k}={v}" for k, v in args.items() if v not in (None, False, ""))
    return rec.get("message") or ""


def _table(records):
    rows = [[r.get("ts"), r.get("user"), r.get("cluster"), r.get("action"), r.get("event"),
             _detail(r)] for r in records]
    return (list(_COLUMNS), rows)


@task(help={
    "format": "table or json",
    "limit": "show only the last N records (default 50; 0 = all)",
    "cluster": "only this cluster's records",
})
def history(ctx, format=None, limit=50, cluster=None):
    """Show the audit journal: who did what to which cluster, when, and how it ended."""
    fmt = output.resolve_format(ctx, format)
    limit = checks.whole("limit", limit, 0, 1_000_000, "records, 0 = all")
    if cluster is not None:
        # a filter of the local journal: any cluster name may be asked for, but it is a value
        # like any other (no metacharacters, no control characters, not empty)
        remote.check_value("cluster", cluster)
    records = journal.history(ctx, limit=limit or None, cluster=cluster)
    output.emit(records, fmt, table=_table)
