"""Tasks about hatasks itself: the audit history."""

import json
import re

from hatasks import checks, journal, output, remote
from hatasks.base import helps, task

_COLUMNS = ("ts", "user", "cluster", "action", "event", "detail")
#: fields every record has, or that only link records: not repeated in ``detail``
_COMMON = {"ts", "user", "host", "pid", "cluster", "action", "args", "event", "op", "parent"}
_PLAIN = re.compile(r"^[^\s\"'=]+$")


def _value(value):
    """One value as the operator reads it: bare when plain, double-quoted otherwise."""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, (list, tuple)):
        text = "; ".join(str(_value(v)).strip('"') for v in value)
    else:
        text = str(value)
    return text if _PLAIN.match(text) else json.dumps(text, ensure_ascii=False)


def key_values(mapping, prefix=""):
    """``mapping`` as ``key=value`` words (nested dicts as ``key.sub=value``, a record's
    ``evidence`` and ``data`` as their own keys; empty values left out), never a repr."""
    words = []
    for key, value in (mapping or {}).items():
        if value is None or value == "" or value == [] or value == {}:
            continue
        if isinstance(value, dict):
            inner = prefix if not prefix and key in ("evidence", "data") else f"{prefix}{key}."
            words.extend(key_values(value, inner))
        else:
            words.append(f"{prefix}{key}={_value(value)}")
    return words


def _detail(rec):
    event = rec.get("event")
    if event == "start":
        args = {k: v for k, v in (rec.get("args") or {}).items() if v is not False}
        return " ".join(key_values(args))
    if event == "checkpoint":
        return f"step={_value(rec.get('step'))}"
    if event == "step":
        return f"begins={_value(rec.get('step'))}"
    extra = {k: v for k, v in rec.items() if k not in _COMMON and k != "message"}
    if event == "newest":
        extra = {"newest": extra.pop("newest", None), **extra}
    words = key_values(extra)
    message = rec.get("message")
    return " ".join(([str(message)] if message else []) + words)


def _same_newest(a, b):
    keys = ("cluster", "newest", "evidence")
    return json.dumps([a.get(k) for k in keys], sort_keys=True, default=str) == json.dumps(
        [b.get(k) for k in keys], sort_keys=True, default=str)


def fold_newest(records):
    """``records`` with each newest-data record identical to the previous newest-data record
    of its cluster folded into that one: [(record, repeats, last ts)]."""
    rows, last = [], {}
    for rec in records:
        if rec.get("event") == "newest":
            prev = last.get(rec.get("cluster"))
            if prev is not None and _same_newest(prev[0], rec):
                prev[1] += 1
                prev[2] = rec.get("ts")
                continue
            row = [rec, 0, None]
            last[rec.get("cluster")] = row
            rows.append(row)
        else:
            rows.append([rec, 0, None])
    return rows


def _table(records):
    rows = []
    for rec, repeats, until in fold_newest(records):
        detail = _detail(rec)
        if repeats:
            detail += f" (recorded again {repeats} time{'s' if repeats > 1 else ''}, last {until})"
        rows.append([rec.get("ts"), rec.get("user"), rec.get("cluster"), rec.get("action"),
                     rec.get("event"), detail])
    return (list(_COLUMNS), rows)


@task(help=helps(None, {
    "format": True,
    "limit": "show only the last N records (default 50; 0 = all)",
    "cluster": "only this cluster's records",
}))
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
