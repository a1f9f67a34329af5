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


# --------------------------------------------------------------------------- progress


def human_bytes(n):
    """1536 -> '1.5 kB'; decimal units, as df -H and pg_size_pretty's neighbours print them."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


def human_seconds(s):
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(label, done, total, seconds, unit="bytes", approx=False):
    """Pure: the one progress line, e.g. 'db02: import  412.0 MB of 1.1 GB (37 %), 48.2 MB/s,
    ETA 14s'. TOTAL None or 0: no share and no ETA; APPROX: the total is an estimate ('of ~').
    UNIT 'bytes' or a noun ('tables')."""
    fmt = human_bytes if unit == "bytes" else (lambda n: f"{int(n)} {unit}")
    text = f"{label}  {fmt(done)}"
    if total:
        text += f" of {'~' if approx else ''}{fmt(total)} ({min(100, int(100 * done / total))} %)"
    rate = done / seconds if seconds > 0 else 0.0
    if unit == "bytes":
        text += f", {human_bytes(rate)}/s"
    else:
        text += f", {rate:.1f} {unit}/s"
    if total and rate > 0 and done < total:
        text += f", ETA {human_seconds((total - done) / rate)}"
    return text


def progress_wanted(stream=None, quiet=False):
    """Progress lines only for a person watching: stdout is a terminal and not --quiet (cron,
    a pipe or a log file get the step lines alone)."""
    stream = stream or sys.stdout
    if quiet:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


_live = []   # the progress lines on screen now (one per running long step)


def clear_progress():
    """Wipe the progress lines on screen before an ordinary line is printed (another thread's
    step line must not land at the end of a progress line); they redraw on their next update."""
    for p in list(_live):
        p.wipe()


class Progress:
    """One line updated in place (\\r) on a terminal, at most every INTERVAL seconds; nothing
    when not wanted. ``update(done, total)`` as often as convenient; ``finish()`` clears the
    line and returns the final figures {"bytes" (or the unit), "seconds", "rate"} for the
    journal (computed whether or not anything was shown)."""

    def __init__(self, label, total=None, unit="bytes", stream=None, show=None, interval=0.3,
                 clock=None, approx=False):
        import time

        self.clock = clock or time.monotonic
        self.label, self.total, self.unit, self.approx = label, total, unit, approx
        self.stream = stream or sys.stdout
        self.show = progress_wanted(self.stream) if show is None else show
        self.interval = interval
        self.t0 = self.clock()
        self.done = 0
        self.shown_at = None
        self.width = 0

    def update(self, done, total=None):
        if done is not None:
            self.done = done
        if total:
            self.total = total
        if not self.show:
            return
        now = self.clock()
        if self.shown_at is not None and now - self.shown_at < self.interval:
            return
        self.shown_at = now
        line = progress_line(self.label, self.done, self.total, now - self.t0, self.unit,
                             self.approx)
        pad = max(0, self.width - len(line))
        self.width = len(line)
        if self not in _live:
            _live.append(self)
        try:
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()
        except (OSError, ValueError):
            self.show = False

    def wipe(self):
        """Clear the line (it is drawn again on the next update)."""
        if self.show and self.width:
            try:
                self.stream.write("\r" + " " * self.width + "\r")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self.width = 0
        self.shown_at = None

    def finish(self, done=None):
        if done is not None:
            self.done = done
        seconds = max(self.clock() - self.t0, 1e-9)
        self.wipe()
        if self in _live:
            _live.remove(self)
        key = "bytes" if self.unit == "bytes" else self.unit
        return {key: int(self.done), "seconds": round(seconds, 2),
                "rate": round(self.done / seconds, 1)}


class watching:
    """``with watching(progress, measure):`` calls MEASURE() (-> done, or (done, total)) every
    EVERY seconds in a thread while the block runs and shows it; only when the progress is
    shown (a cron run pays nothing). A failing measure is skipped: progress is a courtesy,
    never a reason for a step to fail."""

    def __init__(self, progress, measure, every=0.5):
        import threading

        self.progress, self.measure, self.every = progress, measure, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True) if progress.show else None

    def _loop(self):
        while True:   # first at once: a short step on a terminal still shows its line
            try:
                got = self.measure()
            except Exception:  # noqa: BLE001 - a courtesy: never fail the step
                got = None
            if isinstance(got, tuple):
                self.progress.update(*got)
            else:   # None (nothing to read yet): the line as it stands
                self.progress.update(got)
            if self.stop.wait(self.every):
                return

    def __enter__(self):
        if self.thread:
            self.thread.start()
        return self.progress

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread:
            self.thread.join(5)
        return False
