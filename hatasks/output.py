"""Rendering of task results, in one place: ``--format table`` (tabulate) or ``json``.

``emit(data, fmt, table=...)``: with ``fmt="json"`` prints ``data`` as indented JSON (the
machine contract); with ``fmt="table"`` prints the human view given by
``table``, which may be:

- a list of dicts (one table; columns from the keys, first-seen order),
- ``(headers, rows)`` (one table),
- a list of ``(title, rows_or_(headers, rows))`` pairs (several titled tables),
- a callable taking ``data`` and returning one of the above (or a string),
- a string (printed as is),
- None: ``data`` itself is rendered (dict -> key/value table, list of dicts -> table).
"""

import json
import sys

from hatasks.errors import UsageError


def tabulate(*args, **kwargs):
    """``tabulate.tabulate``, imported on first use (it costs start-up time every task that
    prints no table, or prints JSON, would pay)."""
    from tabulate import tabulate as render

    return render(*args, **kwargs)


FORMATS = ("table", "json")


def validate_format(fmt):
    """Return ``fmt`` if it is a known format; UsageError otherwise."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def resolve_format(ctx, fmt=None):
    """``fmt`` if given, else ``hatasks.format`` from the config (default table); validated."""
    if not fmt:
        try:
            fmt = ctx.config.hatasks.format
        except (AttributeError, KeyError):
            fmt = None
    return validate_format(fmt or "table")


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def _is_pair(obj):
    return isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], (list, tuple))


def render_table(spec):
    """Text for one table spec: list of dicts, (headers, rows), dict, or a string."""
    if isinstance(spec, str):
        return spec
    if _is_pair(spec):
        headers, rows = spec
        rows = [[_cell(c) for c in row] for row in rows]
        return tabulate(rows, headers=list(headers)) if rows else "(none)"
    if isinstance(spec, dict):
        return tabulate([[k, _cell(v)] for k, v in spec.items()], tablefmt="plain")
    rows = list(spec or [])
    if not rows:
        return "(none)"
    if all(isinstance(r, dict) for r in rows):
        headers = []
        for r in rows:
            headers.extend(k for k in r if k not in headers)
        return tabulate([[_cell(r.get(h)) for h in headers] for r in rows], headers=headers)
    return tabulate([[_cell(c) for c in row] for row in rows])


def _is_titled(spec):
    return (
        isinstance(spec, list)
        and spec
        and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in spec)
    )


def render(data, fmt, table=None):
    """The text :func:`emit` would print."""
    validate_format(fmt)
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    spec = table(data) if callable(table) else table
    if spec is None:
        spec = data
    if _is_titled(spec):
        parts = []
        for title, sub in spec:
            parts.append(f"{title}\n{render_table(sub)}")
        return "\n\n".join(parts)
    return render_table(spec)


def emit(data, fmt, table=None, file=None):
    """Print ``data`` as JSON (``fmt="json"``) or as the table(s) ``table`` describes."""
    text = render(data, fmt, table)
    print(text, file=file or sys.stdout, flush=True)
    return text
