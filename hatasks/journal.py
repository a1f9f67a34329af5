"""Audit journal, per-cluster operation lock, newest-data records.

Everything lives in ``state_dir`` (config ``hatasks.state_dir``, created mode 0700):

- ``journal.jsonl``: append-only JSON lines (mode 0600, fsync'd on every write). A record:
  ``{ts, user, host, pid, op, cluster, action, args, event, ...}`` with ``event`` one of
  ``start done failed refused note step checkpoint newest``; ``done``/``failed``/``refused``
  carry ``message``; ``step`` (a step begins) and ``checkpoint`` (it completed) carry
  ``step``; ``op`` ties the records of one operation together.
- ``lock.<cluster>``: held with ``fcntl.flock`` while an operation runs; its body says
  who holds it (user, pid, action, since). The kernel drops the lock when the holder
  dies, so a stale lock file is simply taken over.
- ``newest.<cluster>.json``: the latest newest-data record (also in the journal).

Both the lock and the newest-data record are also kept in the cluster itself (``lock.py``: the
CIB, else files on the cluster's hosts), so that every admin host sees them.

Every mutating task runs its work inside :func:`operation`.
"""

import contextlib
import errno
import fcntl
import getpass
import json
import os
import re
import socket
import sys
import threading
import time
from datetime import datetime, timezone

from hatasks import lock as cluster_lock
from hatasks.errors import HaError, UsageError

JOURNAL = "journal.jsonl"
_CLUSTER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _user():
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _is_dry(ctx):
    try:
        return bool(ctx.config.run.dry)
    except (AttributeError, KeyError):
        return False


def state_dir(ctx):
    """The state directory (absolute), created with mode 0700 if missing."""
    try:
        value = ctx.config.hatasks.state_dir
    except (AttributeError, KeyError):
        value = None
    path = os.path.abspath(os.path.expanduser(str(value or ".hatasks")))
    if not os.path.isdir(path):
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)
        except OSError as exc:
            raise HaError(f"cannot create state dir {path}: {exc.strerror}") from None
    return path


def _check_cluster(cluster):
    if not cluster or not _CLUSTER.match(str(cluster)):
        raise UsageError(f"bad cluster name {cluster!r}")
    return str(cluster)


def write_private(path, text):
    """Atomically replace ``path`` (mode 0600) with ``text``."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


#: the events that end an operation without success (counted: see outcomes_written)
OUTCOMES = ("failed", "refused")
_outcomes = {"written": 0}


def outcomes_written():
    """How many failed/refused records this process has written so far: a task that ends in
    an error after the count grew has had its outcome journaled already."""
    return _outcomes["written"]


def refusal(ctx, cluster, action, args, message):
    """Journal that ACTION was refused before it began (the cluster's state, a held lock, no
    confirmation), with the reason; nothing under --dry."""
    if _is_dry(ctx):
        return None
    return Journal(ctx).write("refused", cluster, action, args, message=message)


class Journal:
    """The append-only journal of one state dir."""

    def __init__(self, ctx):
        self.dir = state_dir(ctx)
        self.path = os.path.join(self.dir, JOURNAL)

    def write(self, event, cluster=None, action=None, args=None, **fields):
        """Append one record (fsync'd) and return it."""
        record = {
            "ts": _now(),
            "user": _user(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "cluster": cluster,
            "action": action,
            "args": args if args is not None else {},
            "event": event,
        }
        record.update(fields)
        if event in OUTCOMES:
            _outcomes["written"] += 1
        line = json.dumps(record, default=str, sort_keys=False) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        except OSError as exc:
            raise HaError(f"cannot write journal {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        return record

    def records(self):
        """All records, oldest first (lines that are not JSON are skipped)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out


def history(ctx, limit=None, cluster=None, action=None):
    """The journal's records (filtered by cluster/action), oldest first, the last ``limit``."""
    recs = [
        r for r in Journal(ctx).records()
        if (cluster is None or r.get("cluster") == cluster)
        and (action is None or r.get("action") == action)
    ]
    if limit is not None and int(limit) >= 0:
        recs = recs[-int(limit):] if int(limit) else []
    return recs


# ---------------------------------------------------------------------------
# the per-cluster lock
# ---------------------------------------------------------------------------

_held = {}              # (state dir, cluster) -> {"fd", "depth", "pid", "info"}
_held_lock = threading.RLock()


def _lock_path(ctx, cluster):
    return os.path.join(state_dir(ctx), f"lock.{_check_cluster(cluster)}")


def _read_body(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 65536)
        return json.loads(data.decode()) if data.strip() else None
    except (OSError, ValueError):
        return None


def _describe(cluster, info):
    if not info:
        return f"cluster {cluster} is locked by another hatasks process"
    return (
        f"cluster {cluster} is locked by {info.get('user', '?')} (pid {info.get('pid', '?')}"
        f" on {info.get('host', '?')}) running {info.get('action', '?')}"
        f" since {info.get('since', '?')}"
    )


def _own(ctx, cluster):
    key = (state_dir(ctx), cluster)
    entry = _held.get(key)
    if entry and entry["pid"] == os.getpid():
        return key, entry
    return key, None


def lock_held(ctx, cluster):
    """Who holds ``cluster``'s lock: a dict (user, pid, host, action, since, and
    ``self: True`` when it is this process) or None when nobody does."""
    cluster = _check_cluster(cluster)
    with _held_lock:
        _, entry = _own(ctx, cluster)
        if entry:
            return dict(entry["info"], self=True)
    path = _lock_path(ctx, cluster)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return cluster_lock.holder(ctx, cluster)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return _read_body(fd) or {}
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return cluster_lock.holder(ctx, cluster)
    finally:
        os.close(fd)


def check_unlocked(ctx, cluster):
    """LOCKED HaError if another process holds ``cluster``'s lock (for cron tasks)."""
    info = lock_held(ctx, cluster)
    if info is not None and not info.get("self"):
        raise HaError(_describe(cluster, info), HaError.LOCKED)


def acquire(ctx, cluster, action):
    """Take ``cluster``'s lock (re-entrant within this process); LOCKED HaError if another
    process holds it. Pair with :func:`release`."""
    cluster = _check_cluster(cluster)
    with _held_lock:
        key, entry = _own(ctx, cluster)
        if entry:
            entry["depth"] += 1
            return entry["info"]
        path = _lock_path(ctx, cluster)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            info = _read_body(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise HaError(_describe(cluster, info), HaError.LOCKED) from None
            raise HaError(f"cannot lock {path}: {exc.strerror}") from None
        info = {"user": _user(), "pid": os.getpid(), "host": socket.gethostname(),
                "action": action, "since": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        try:
            in_cluster = cluster_lock.take(ctx, cluster, action, info["user"])
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        _held[key] = {"fd": fd, "depth": 1, "pid": os.getpid(), "info": info,
                      "cluster_lock": in_cluster}
        for prev in (in_cluster.took_over if in_cluster else ()):
            Journal(ctx).write("note", cluster, action,
                               message=("took over the lock of a killed holder" if prev.get("dead")
                                        else "took over an expired lock"),
                               data={k: prev.get(k) for k in ("user", "host", "pid", "action",
                                                              "since", "store")})
        return info


def release(ctx, cluster):
    cluster = _check_cluster(cluster)
    with _held_lock:
        key, entry = _own(ctx, cluster)
        if not entry:
            return
        entry["depth"] -= 1
        if entry["depth"] > 0:
            return
        del _held[key]
        if entry.get("cluster_lock"):
            entry["cluster_lock"].release()
        fd = entry["fd"]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ---------------------------------------------------------------------------
# operations
# ---------------------------------------------------------------------------


class Operation:
    """Handle given to the body of :func:`operation`."""

    def __init__(self, ctx, cluster, action, args, op_id, journal, parent=None):
        self.ctx = ctx
        self.cluster = cluster
        self.action = action
        self.args = args
        self.id = op_id
        self.journal = journal
        self.parent = parent
        self.dry = journal is None

    def _write(self, event, **fields):
        if self.journal is None:
            return None
        extra = {"parent": self.parent} if self.parent else {}
        return self.journal.write(event, self.cluster, self.action, self.args,
                                  op=self.id, **extra, **fields)

    def note(self, message, **data):
        """Journal a remark (``event: note``)."""
        return self._write("note", message=message, **({"data": data} if data else {}))

    def checkpoint(self, step, **data):
        """Journal that ``step`` completed (``event: checkpoint``), for resumable procedures."""
        return self._write("checkpoint", step=step, **({"data": data} if data else {}))

    def step(self, name):
        """Journal that step ``name`` begins (``event: step``): when the operation is cut short,
        the step begun and not checkpointed is the one that was running."""
        return self._write("step", step=name)


_ops = threading.local()


def _confirm(cluster, action, summary):
    what = f"{action} on cluster {cluster}" + (f": {summary}" if summary else "")
    print(f"About to {what}", flush=True)
    try:
        answer = input("Proceed? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


@contextlib.contextmanager
def operation(ctx, cluster, action, args=None, yes=False, summary=None):
    """Run a mutating step as one journaled, locked, confirmed operation.

    Under ``inv --dry``: prints ``[dry] would ACTION ...`` and runs the body without
    lock, journal or confirmation (its commands print instead of running). Otherwise:
    takes ``cluster``'s lock (LOCKED HaError naming the holder), asks "Proceed? [y/N]"
    on a terminal or, without one, refuses (REFUSED) unless ``yes``; journals ``start``
    and then ``done`` or ``failed`` (with the error message; the error propagates).
    Nested operations in this process reuse the lock and the confirmation.
    Yields an :class:`Operation` (``.note()``, ``.checkpoint()``).
    """
    cluster = _check_cluster(cluster)
    args = dict(args or {})
    if _is_dry(ctx):
        detail = f" ({summary})" if summary else ""
        shown = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in args.items()
                         if v not in (None, False))
        print(f"[dry] would {action} on cluster {cluster}{(' ' + shown) if shown else ''}{detail}",
              flush=True)
        yield Operation(ctx, cluster, action, args, None, None)
        return

    journal = Journal(ctx)
    stack = getattr(_ops, "stack", None)
    if stack is None:
        stack = _ops.stack = []
    nested = bool(stack)
    acquire(ctx, cluster, action)
    op_id = f"{int(time.time() * 1000):x}-{os.getpid()}-{len(stack)}"
    op = Operation(ctx, cluster, action, args, op_id, journal,
                   parent=stack[-1].id if nested else None)
    try:
        if not nested and not yes:
            if not sys.stdin or not sys.stdin.isatty():
                op._write("refused", message="no terminal to confirm and no --yes")
                raise HaError(
                    f"refusing to {action} on cluster {cluster} without confirmation:"
                    " no terminal; run again with --yes", HaError.REFUSED)
            if not _confirm(cluster, action, summary):
                op._write("refused", message="not confirmed by the operator")
                raise HaError(f"{action} on cluster {cluster}: not confirmed", HaError.REFUSED)
        op._write("start", **({"summary": summary} if summary else {}))
        stack.append(op)
        try:
            yield op
        except HaError as exc:
            op._write("failed", message=exc.message, code=exc.code)
            raise
        except KeyboardInterrupt:
            op._write("failed", message="interrupted")
            raise
        except BaseException as exc:
            op._write("failed", message=f"{type(exc).__name__}: {exc}")
            raise
        else:
            made_equal = action in EQUALIZING and cluster_lock.enabled(ctx) and not _is_dry(ctx)
            before = newest(ctx, cluster) if made_equal else None
            op._write("done", message="ok")
            copied_from = (args or {}).get("source") or (before or {}).get("newest")
            if before and copied_from:
                # the backends are equal now: say so in the cluster too, or another admin host
                # keeps reading the degenerated record (and its contradictions) kept there
                record_newest(ctx, cluster, copied_from, {
                    "in_sync": True, "reason": f"{action} done: the backends were made equal"})
        finally:
            stack.pop()
    finally:
        release(ctx, cluster)


def operations(ctx, pid=None, since=None):
    """The operations process ``pid`` (default: this one) began at or after ``since`` (epoch
    seconds; default: any time), oldest first, read back from the journal. Each is a dict:
    ``{op, action, cluster, args, parent, started, outcome ("done", "failed" or None while it
    runs), message, checkpoints: [step...], running: the step begun and not checkpointed, or
    None}``. Under ``inv --dry`` nothing is journaled: [].

    For the report of an interrupted task, which must say what was running and what finished."""
    if _is_dry(ctx):
        return []
    pid = os.getpid() if pid is None else int(pid)
    stamp = (datetime.fromtimestamp(int(since), timezone.utc).isoformat(timespec="seconds")
             .replace("+00:00", "Z") if since is not None else "")
    ops = {}
    for r in Journal(ctx).records():
        if r.get("pid") != pid or not r.get("op") or str(r.get("ts", "")) < stamp:
            continue
        event, o = r.get("event"), ops.get(r["op"])
        if event == "start":
            ops[r["op"]] = {"op": r["op"], "action": r.get("action"), "cluster": r.get("cluster"),
                            "args": r.get("args") or {}, "parent": r.get("parent"),
                            "started": r.get("ts"), "outcome": None, "message": None,
                            "checkpoints": [], "running": None}
        elif o is None:
            continue
        elif event == "step":
            o["running"] = str(r.get("step"))
        elif event == "checkpoint":
            step = str(r.get("step"))
            o["checkpoints"].append(step)
            if o["running"] == step:
                o["running"] = None
        elif event in ("done", "failed"):
            o["outcome"], o["message"] = event, r.get("message")
    return list(ops.values())


def last_operation(ctx, cluster, action=None):
    """The latest operation of ``cluster`` (of ``action`` if given) as a dict:
    ``{op, action, args, started, finished (bool), outcome, checkpoints: [step...],
    records}``; None if there is none. For resumable procedures."""
    recs = [r for r in Journal(ctx).records()
            if r.get("cluster") == cluster and r.get("op")
            and (action is None or r.get("action") == action) and not r.get("parent")]
    starts = [r for r in recs if r.get("event") == "start"]
    if not starts:
        return None
    start = starts[-1]
    mine = [r for r in recs if r.get("op") == start["op"]]
    end = [r for r in mine if r.get("event") in ("done", "failed")]
    return {
        "op": start["op"],
        "action": start.get("action"),
        "args": start.get("args"),
        "started": start.get("ts"),
        "finished": bool(end),
        "outcome": end[-1]["event"] if end else None,
        "message": end[-1].get("message") if end else None,
        "checkpoints": [r.get("step") for r in mine if r.get("event") == "checkpoint"],
        "records": mine,
    }


# ---------------------------------------------------------------------------
# the newest-data record: the one fact that must never be lost
# ---------------------------------------------------------------------------


def record_newest(ctx, cluster, host, evidence):
    """Record that ``host`` holds ``cluster``'s newest data, with ``evidence`` (any
    JSON-able value) and the time. Journaled and kept in ``newest.<cluster>.json``.
    Under --dry only prints. Returns the record."""
    cluster = _check_cluster(cluster)
    if _is_dry(ctx):
        print(f"[dry] would record newest data of cluster {cluster}: {host}", flush=True)
        return None
    rec = Journal(ctx).write("newest", cluster, "newest", {}, newest=host, evidence=evidence)
    write_private(os.path.join(state_dir(ctx), f"newest.{cluster}.json"),
                   json.dumps(rec, default=str, indent=2) + "\n")
    if cluster_lock.enabled(ctx):
        # the cluster keeps the record that stands now (this one, or an earlier degenerated one
        # it does not replace), so another admin host reads the same answer
        standing = newest(ctx, cluster) or rec
        standing = {k: v for k, v in standing.items() if k != "kept_in"}
        rec = dict(rec, kept_in=cluster_lock.write_newest(ctx, cluster, standing))
    return rec


#: operations whose success makes the backends equal (a degenerated record stops standing)
EQUALIZING = ("sync.resync", "pgpool.recover")


def _degenerated_record(rec):
    """True when a newest-data record was taken while pgpool ran degenerated."""
    evd = rec.get("evidence")
    if not isinstance(evd, dict):
        return False
    if evd.get("in_sync") is not None:
        return not evd["in_sync"]
    return bool(evd.get("degenerated"))


def newest(ctx, cluster):
    """The newest-data record that stands for ``cluster`` (a dict with ``newest`` = host,
    ``evidence``, ``ts``, ``user``...), or None when none was ever recorded.

    Once pgpool has degenerated, the FIRST record taken since the backends were last seen in
    sync (or last resynced) names the backend that kept the writes; it stands until the
    backends are in sync again. A later degenerated view naming another backend does not
    replace it: after a split brain a pgpool restarted with a stale status file names the
    wrong one. Such views are listed in the record's ``contradicted_by``, and a resync
    refuses to pick its source alone while they are there.
    """
    cluster = _check_cluster(cluster)
    standing, contra = None, []
    records = _with_cluster_record(Journal(ctx).records(), cluster_lock.read_newest(ctx, cluster))
    for r in records:
        if r.get("cluster") != cluster:
            continue
        if r.get("event") == "done" and r.get("action") in EQUALIZING:
            # the backends were made equal: a degenerated record no longer stands (an in-sync
            # one written by the resync itself does)
            if standing is not None and _degenerated_record(standing):
                standing = None
            contra = []
            continue
        if r.get("event") != "newest":
            continue
        if not _degenerated_record(r) or standing is None or not _degenerated_record(standing):
            standing, contra = r, []
        elif r.get("newest") != standing.get("newest"):
            contra.append({k: r.get(k) for k in ("newest", "ts", "evidence")})
    if standing is None:
        return None
    standing = dict(standing)
    contra = (standing.pop("contradicted_by", None) or []) + contra
    if contra:
        standing["contradicted_by"] = contra
    return standing


def stale_attached(ctx, cluster):
    """Backends of ``cluster`` attached to pgpool without a resync (``stale_attach`` records of
    ``pgpool.attach --force``) that nothing has proved equal since: a done ``sync.resync`` or
    ``pgpool.recover``, or an ``equal`` record (a comparison that found every table equal)."""
    cluster = _check_cluster(cluster)
    stale = []
    for r in Journal(ctx).records():
        if r.get("cluster") != cluster:
            continue
        if r.get("event") == "stale_attach" and r.get("backend") not in stale:
            stale.append(r.get("backend"))
        elif r.get("event") == "equal" or (
                r.get("event") == "done" and r.get("action") in ("sync.resync", "pgpool.recover")):
            stale = []
    return stale


def salvage_pending(ctx, cluster):
    """Salvage files of ``cluster`` (``salvage`` records: a target's writes its source lacked)
    not yet re-applied by a done ``sync.salvage`` of that file: [{"backend", "source", "local",
    "remote", "ts", "proof"}], oldest first."""
    cluster = _check_cluster(cluster)
    pending = {}
    for r in Journal(ctx).records():
        if r.get("cluster") != cluster:
            continue
        if r.get("event") == "salvage" and r.get("local"):
            pending[r["local"]] = {k: r.get(k) for k in ("backend", "source", "local", "remote",
                                                          "ts", "proof")}
        elif r.get("event") == "done" and r.get("action") == "sync.salvage":
            pending.pop((r.get("args") or {}).get("file"), None)
    return list(pending.values())


def records_with_cluster(ctx, cluster):
    """The journal's records with the newest-data record kept in ``cluster`` (written by any
    admin host) in its place: what the DB rules read (``rules.journal_facts``)."""
    return _with_cluster_record(Journal(ctx).records(), cluster_lock.read_newest(ctx, cluster))


def _with_cluster_record(records, kept):
    """The journal's records with the record kept in the cluster (from any admin host) put in
    its place by time; left out when this journal has it already."""
    if not kept:
        return records
    same = ("ts", "host", "pid", "newest")
    for r in records:
        if r.get("event") == "newest" and all(r.get(k) == kept.get(k) for k in same):
            if kept.get("contradicted_by"):
                r.setdefault("contradicted_by", kept["contradicted_by"])
            return records
    ts = str(kept.get("ts") or "")
    at = next((i for i, r in enumerate(records) if str(r.get("ts") or "") > ts), len(records))
    return records[:at] + [dict(kept, event="newest")] + records[at:]
