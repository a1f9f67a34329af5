"""Input validation shared by every task: numbers, ports, stop modes, clusters and hosts.

Each check raises UsageError (naming the option) before anything runs, and returns the
value in the type the caller goes on with.
"""

import re
import unicodedata

from hatasks import remote
from hatasks.errors import UsageError

#: pg_ctl -m and pgpool -m stop modes
MODES = ("smart", "fast", "immediate")


def no_control(name, value):
    """``value`` unchanged, or UsageError naming ``--name`` when it is a string holding a
    control character (a trailing newline, a tab, an escape): int() and float() would
    quietly strip some of them, a shell or a log line would not."""
    if isinstance(value, str) and any(unicodedata.category(ch) == "Cc" for ch in value):
        raise UsageError(f"--{name} {value!r}: control characters are not allowed")
    return value


def positive(name, value, cast=float, whole_to_int=False):
    """``cast(value)`` if it is greater than 0, else UsageError naming ``--name``.

    With ``whole_to_int`` a whole number comes back as an int (2.0 -> 2)."""
    no_control(name, value)
    try:
        value = cast(value)
    except (TypeError, ValueError):
        raise UsageError(f"--{name} must be a number, not {value!r}") from None
    if value <= 0:
        raise UsageError(f"--{name} must be greater than 0, not {value}")
    if whole_to_int and float(value).is_integer():
        return int(value)
    return value


def port(value, option="port"):
    """None (or "") stays None; else an int in 1..65535 or UsageError."""
    if value is None or value == "":
        return None
    no_control(option, value)
    try:
        number = int(str(value))
    except ValueError:
        raise UsageError(f"--{option} must be a number, not {value!r}") from None
    if not 1 <= number <= 65535:
        raise UsageError(f"--{option} {number} is out of range (1-65535)")
    return number


def whole(name, value, low, high, unit=""):
    """``value`` as an int in ``low``..``high``, else UsageError naming ``--name`` and the
    range (the same words as a whole-number option refused on the command line)."""
    no_control(name, value)
    span = f"{low}-{high}" + (f" {unit}" if unit else "")
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[+-]?[0-9]+", text):
        raise UsageError(f"--{name} {value!r}: a whole number please ({span})")
    number = int(text)
    if not low <= number <= high:
        raise UsageError(f"--{name} {value!r}: out of range ({span})")
    return number


def mode(value):
    """One of MODES (pg_ctl / pgpool stop mode) or UsageError."""
    if value not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {value!r}")
    return value


def cluster(ctx, name=None, kind=None, *, exact=False, first=False, wrong_kind=None,
            missing=None, vip=None):
    """The one cluster lookup: validate --cluster NAME (or find the cluster of KIND).

    NAME given (even ""): checked as a value, then looked up: by the inventory (a kind such as ``db`` is
    accepted when one cluster has it), or with ``exact`` among the cluster names only. KIND: the
    cluster must be of that kind. NAME None: the cluster of KIND, the first one when ``first``,
    else the only one. ``vip``: the message when the cluster has no ``vip`` var (None: not
    needed). ``wrong_kind`` and ``missing`` word the errors for the calling task; their fields
    are {name}, {kind} (the cluster's), {want} and {path}.
    """
    inv = remote.inventory(ctx)
    if name is not None:
        remote.check_value("cluster", name)
        if exact and name not in inv.clusters:
            raise UsageError(f"unknown cluster {name!r} (known: {', '.join(inv.clusters)})")
        c = inv.cluster(name)
        if kind is not None and c.kind != kind:
            text = wrong_kind or "cluster {name} is a {kind} cluster, not a {want} cluster"
            raise UsageError(text.format(name=c.name, kind=c.kind, want=kind, path=inv.path))
    else:
        found = inv.clusters_of_kind(kind)
        if not found:
            text = missing or "no {want} cluster (cluster_kind={want}) in {path}"
            raise UsageError(text.format(want=kind, path=inv.path))
        if len(found) > 1 and not first:
            raise UsageError(f"several {kind} clusters: name one with --cluster "
                             f"({', '.join(c.name for c in found)})")
        c = found[0]
    if vip is not None and not c.vars.get("vip"):
        raise UsageError(vip.format(name=c.name))
    return c


def host(ctx, name, option="host", kind=None, cluster=None, noun=None,
         cluster_note="cluster {}"):
    """The one host lookup: validate --OPTION NAME as an inventory host of some cluster.

    ``cluster`` (a Cluster): the host must be one of its hosts. ``kind``: the host's cluster must
    be of that kind; the error lists the hosts that are, naming them ``noun`` (default "DB host"
    for db) with ``cluster_note`` about where NAME is. Without either, a host in no cluster is
    refused. Returns the Host; its cluster is ``host.cluster``.
    """
    remote.check_value(option, name)
    inv = remote.inventory(ctx)
    h = inv.host(name)
    if cluster is not None:
        if h.cluster != cluster.name:
            raise UsageError(f"--{option} {name}: not a host of the {cluster.name} cluster "
                             f"(its hosts: {', '.join(cluster.host_names)})")
    elif kind is not None:
        if not h.cluster or inv.cluster(h.cluster).kind != kind:
            hosts = [x.name for c in inv.clusters_of_kind(kind) for x in c.hosts]
            noun = noun or f"{kind.upper()} host"
            raise UsageError(f"--{option} {name}: not a {noun} "
                             f"({cluster_note.format(h.cluster)}); "
                             f"{noun.split()[0]} hosts: {', '.join(hosts) or 'none'}")
    elif not h.cluster:
        inv.cluster_of(h.name)  # raises: the host is in no cluster
    return h


#: the --cluster value of read-only tasks that covers every cluster of the kind
ALL_CLUSTERS = "all"


def each_cluster(ctx, kind, fmt, show):
    """``--cluster all`` of a read-only task: SHOW(name) (the task's own body for one cluster:
    prints, and raises invoke.Exit when that cluster is not healthy) for every cluster of KIND
    in inventory order. Table: each under a ``== cluster NAME`` header. JSON: one document
    ``{"clusters": [each cluster's document]}``. Exit: 0 when every one was 0, else the
    highest code, with the clusters named."""
    import contextlib
    import io
    import json
    import sys

    import invoke

    from hatasks.errors import HaError

    names = [c.name for c in remote.inventory(ctx).clusters_of_kind(kind)]
    if not names:
        raise UsageError(f"--cluster all: no {kind} cluster in {remote.inventory(ctx).path}")
    docs, failed = [], {}
    for name in names:
        buf = io.StringIO()
        if fmt != "json":
            print(f"== cluster {name}", flush=True)
        try:
            with contextlib.redirect_stdout(buf) if fmt == "json" else contextlib.nullcontext():
                show(name)
        except invoke.Exit as exc:
            failed[name] = exc.code or 1
        except HaError as exc:
            print(f"hatasks: error: {name}: {exc.message}", file=sys.stderr, flush=True)
            failed[name] = exc.code
        if fmt == "json":
            text = buf.getvalue().strip()
            try:
                doc = json.loads(text) if text else {}
            except ValueError:
                doc = {"output": text}
            if isinstance(doc, dict):
                doc.setdefault("cluster", name)
            docs.append(doc)
        else:
            print(flush=True)
    if fmt == "json":
        print(json.dumps({"clusters": docs}, indent=2, default=str), flush=True)
    if failed:
        raise HaError(f"{len(failed)} of {len(names)} {kind} cluster(s) not healthy: "
                      + ", ".join(f"{n} (exit {code})" for n, code in failed.items()),
                      max(failed.values()))
