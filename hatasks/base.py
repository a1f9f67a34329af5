"""The task decorator every hatasks task uses.

It is ``invoke.task`` plus these rules:

- an expected failure (:class:`HaError`) leaves as ``invoke.Exit`` with a one-line message
  on stderr and the error's exit code, never as a traceback;
- options are typed and checked while the command line is parsed (:mod:`hatasks.cli`);
- SIGINT and SIGTERM end the task with exit 130 / 143 and one paragraph on stderr: the task
  that was running, what the journal recorded of it, and the command to run next;
- a reader that goes away (``inv hb.status | head -1``) ends the task quietly with exit
  141, as the shell reports any command killed by SIGPIPE: the output was cut short, so 0
  ("done") would be wrong, and a mutating task stopped by it is an interrupt like any other.
"""

import functools
import inspect
import os
import signal
import sys
import textwrap
import threading
import time

import invoke

from hatasks import cli, journal
from hatasks.errors import HaError
from hatasks.watch import DEFAULT_SECONDS

EXIT_SIGINT = 130
EXIT_SIGTERM = 143
EXIT_SIGPIPE = 141


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that every ``except
    KeyboardInterrupt`` (the journal's among them) treats it as an interrupt."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _operations_since(ctx, since):
    """This process's journaled operations begun at or after ``since`` (epoch seconds), as
    :func:`hatasks.journal.operations` reads them; [] when the journal cannot be read."""
    try:
        return journal.operations(ctx, os.getpid(), since)
    except Exception:  # noqa: BLE001 - reporting an interrupt must not fail
        return []


def next_command(name, ops):
    """What the operator runs after an interrupted ``name`` (the task's dotted name)."""
    actions = [name] + [o["action"] or "" for o in ops]
    if any(a.startswith("sync.") for a in actions):
        return ("inv sync.status to see where the resync stopped, then inv sync.resume to"
                " finish it or inv sync.rollback to undo it")
    if any(a.startswith(("lb.", "web.")) for a in actions):
        return "inv lb.diagnose to see the state of the LB cluster before anything else"
    return "inv db.diagnose to see the state of the cluster before anything else"


def _running(o, ops):
    """What operation ``o`` was running when it stopped: its step begun and not finished,
    and inside it the nested operation that had not finished (e.g. hb.standby in db.failover);
    None when nothing was (it had finished, or stopped between steps)."""
    if o.get("outcome") == "done":
        return None
    inner = [c for c in ops if c.get("parent") == o.get("op") and c.get("outcome") != "done"]
    child = None
    if inner:
        deeper = _running(inner[-1], ops)
        child = inner[-1]["action"] + (f" ({deeper})" if deeper else "")
    step = o.get("running")
    if step and child:
        return f"step {step}, in it {child}"
    return f"step {step}" if step else child


def interrupt_report(name, why, ops, journal_path=None):
    """The one paragraph an interrupted task prints on stderr: what was running, what each
    operation had finished (its checkpoints and the nested operations that ended), what the
    journal recorded, and the command to run next."""
    if not ops:
        text = (f"hatasks: {name} was interrupted ({why}) before it began any operation:"
                " nothing was changed and the journal has no record of it. Run it again"
                " when ready.")
        return text
    ids = {o.get("op") for o in ops}
    top = [o for o in ops if not o.get("parent") or o.get("parent") not in ids] or ops
    running = [r for r in (_running(o, ops) for o in top) if r]
    parts = []
    for o in top:
        finished = list(o.get("checkpoints") or [])
        finished += [c["action"] for c in ops
                     if c.get("parent") == o.get("op") and c.get("outcome") == "done"
                     and c.get("action") not in finished]
        state = ("finished" if o.get("outcome") == "done" else
                 f"stopped in {_running(o, ops)}" if _running(o, ops) else "stopped unfinished")
        parts.append(f"{o['action']} on cluster {o['cluster']} (began {o['started']},"
                     f" steps finished: {', '.join(finished) or 'none'}) {state}")
    where = f" ({journal_path})" if journal_path else ""
    during = f" while running {'; '.join(running)}" if running else ""
    return (f"hatasks: {name} was interrupted ({why}){during}. The journal{where} records: "
            + "; ".join(parts)
            + (". What was running may be half done" if running else
               ". Anything after the last finished step may be half done")
            + ". Next: " + next_command(name, ops) + ".")


def _journal_path(ctx):
    try:
        return journal.Journal(ctx).path
    except Exception:  # noqa: BLE001
        return None


#: the only short flags, one meaning each in every task (invoke's automatic ones are off:
#: they gave -f three meanings); README "Short flags"
SHORT_FLAGS = {"yes": "y", "cluster": "c", "node": "n", "quiet": "q", "timeout": "t"}

#: the task options that ``fab -H HOST`` fills, in order of preference
FAB_HOST_OPTIONS = ("host", "node")
_fab_hosts = {"given": False}


def hosts_from_fab(given=True):
    """``fabfile.py`` calls this when ``fab -H`` was given: a task's ``--host`` (else
    ``--node``) is then no longer required on the command line; :class:`HaTask` fills it."""
    _fab_hosts["given"] = bool(given)


class HaTask(invoke.Task):
    """An invoke Task with typed options and the interrupt and closed-pipe rules."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(name)
        if short and short not in taken_names and short not in opts["names"]:
            opts["names"].append(short)
        return opts

    def get_arguments(self, ignore_unknown_help=None):
        # invoke's arg_opts pops each help text out of self.help: keep them for the next call
        # (the same task object serves every collection built in one process)
        kept = dict(self.help)
        try:
            args = cli.typed_arguments(super().get_arguments(ignore_unknown_help))
        finally:
            self.help = kept
        own = self.host_option() if _fab_hosts["given"] else None
        for arg in args:
            if own and arg.name == own:
                arg.positional = False
        return args

    def host_option(self):
        """The option naming the one host this task acts on (``fab -H``), or None."""
        params = self.argspec(self.body).parameters
        return next((name for name in FAB_HOST_OPTIONS if name in params), None)

    @property
    def called_as(self):
        name = getattr(self, "hatasks_called_as", None)
        if name:
            return name
        module = getattr(self.body, "__module__", "") or ""
        tail = module.rsplit(".", 1)[-1]
        return f"{tail}.{self.name}" if tail and tail not in ("tasks", "__main__") else self.name

    def __call__(self, *args, **kwargs):
        ctx = args[0] if args else None
        kwargs = self._fab_host(ctx, kwargs)
        began = time.time()
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if main else None
        try:
            result = super().__call__(*args, **kwargs)
            sys.stdout.flush()
            return result
        except KeyboardInterrupt as exc:
            term = isinstance(exc, Terminated)
            self._report(ctx, began, "SIGTERM" if term else "SIGINT (Ctrl-C)", main)
            raise invoke.Exit(code=EXIT_SIGTERM if term else EXIT_SIGINT) from None
        except BrokenPipeError:
            cli.quiet_stdout()
            ops = _operations_since(ctx, began) if ctx is not None else []
            if ops:
                self._report(ctx, began, "its output pipe was closed", main, ops)
            raise invoke.Exit(code=EXIT_SIGPIPE) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    def _fab_host(self, ctx, kwargs):
        """``fab -H HOST TASK``: fabric calls the task once per host with a Connection as
        ``ctx``. The host fills the task's ``--host`` (else ``--node``); a task without either
        (a whole cluster, the journal) refuses -H (exit 2), as does a different explicit value."""
        host = getattr(ctx, "original_host", None)
        if not host or not type(ctx).__module__.startswith("fabric"):
            return kwargs
        name = self.host_option()
        if name:
            given = kwargs.get(name)
            if given not in (None, "", host):
                print(f"hatasks: error: {self.called_as}: -H {host} and --{name} {given}"
                      " disagree; give one of them", file=sys.stderr, flush=True)
                raise invoke.Exit(code=2)
            return {**kwargs, name: host}
        print(f"hatasks: error: {self.called_as} does not act on one host (it has no --host"
              " or --node): run it without -H", file=sys.stderr, flush=True)
        raise invoke.Exit(code=2)

    def _report(self, ctx, began, why, main, ops=None):
        # a second Ctrl-C must not cut the paragraph short with a traceback
        if main:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if ops is None:
                ops = _operations_since(ctx, began) if ctx is not None else []
            text = interrupt_report(self.called_as, why, ops,
                                    _journal_path(ctx) if ops else None)
            print(textwrap.fill(text, width=100), file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
        finally:
            if main:
                signal.signal(signal.SIGINT, signal.default_int_handler)


#: the help of the options many tasks share, declared once (``helps``)
HELP = {
    "cluster": "{kind} cluster (default: the only one)",
    "timeout": "seconds for each verification (default 60)",
    "yes": "do not ask for confirmation (needed without a terminal)",
    "force": "do it anyway {why}",
    "format": "table or json",
    "mode": "stop mode: smart, fast (default) or immediate",
    "method": "resync method: dump (default; the runbook's, in a maintenance window),"
              " basebackup (physical copy) or online (pcp_recovery_node)",
    "quiet": "print nothing on success (cron)",
    "watch": f"refresh every SECONDS (default {DEFAULT_SECONDS}) until Ctrl-C, like crm_mon -i 3;"
             " JSON: one document per line per refresh",
}


def helps(kind, own, why=""):
    """The help dict of a task: the shared texts of HELP for the options OWN maps to True
    (``cluster`` naming KIND's cluster, ``force`` saying WHY; KIND None where no option
    names a cluster of one kind), OWN's other texts as given:
    ``helps("DB", {"to": "node to move to", "cluster": True, "timeout": True, "yes": True})``."""
    out = {}
    for name, text in own.items():
        if text is True:
            out[name] = HELP[name].format(kind=kind, why=why)
        elif text:
            out[name] = text
    return out


#: the exit codes that mean "refused" (the cluster's state, a held lock, no confirmation)
REFUSALS = (HaError.STATE, HaError.LOCKED, HaError.REFUSED)
#: the task modules whose options name a host of this kind of cluster
_KIND_OF_MODULE = {"db": "db", "pgpool": "db", "pg": "db", "sync": "db", "lb": "lb", "web": "lb"}
_HOST_OPTIONS = ("node", "host", "from_", "to", "source", "target")


def refusal_cluster(ctx, module, arguments):
    """The cluster a refused task was about: its --cluster, else the cluster of the host it
    names, else the only cluster of its module's kind; None when none can be told."""
    from hatasks import remote

    if arguments.get("cluster"):
        return str(arguments["cluster"])
    try:
        inv = remote.inventory(ctx)
        for name in _HOST_OPTIONS:
            value = arguments.get(name)
            if value and value in inv.hosts:
                return inv.host(value).cluster
        kind = _KIND_OF_MODULE.get(module)
        mine = [c for c in inv.clusters.values() if c.kind == kind]
        return mine[0].name if len(mine) == 1 else None
    except Exception:  # noqa: BLE001 - the journal line is written without it
        return None


def journal_refusal(ctx, fn, name, a, kw, exc):
    """A mutating task (one with ``--yes``) of hatasks refused before its operation wrote an
    outcome: journal it (event ``refused``, the reason), so that `history` shows every refusal."""
    module = fn.__module__ or ""
    if not module.startswith("hatasks.") or ctx is None:
        return
    try:
        bound = inspect.signature(fn).bind(ctx, *a, **kw)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if "yes" not in arguments:
            return
        arguments.pop("ctx", None)
        tail = module.rsplit(".", 1)[-1]
        args = {k.rstrip("_"): v for k, v in arguments.items()
                if v not in (None, False) and k not in ("yes", "ctx")}
        journal.refusal(ctx, refusal_cluster(ctx, tail, arguments), f"{tail}.{name}", args,
                        exc.message)
    except Exception:  # noqa: BLE001 - journaling a refusal must not hide the refusal
        pass


def task(*args, **kwargs):
    """Like ``invoke.task``; turns :class:`HaError` into a clean non-zero exit. A mutating task
    (one with ``--yes``) that is refused (exit 3, 5 or 7) before an operation journaled its
    outcome gets a ``refused`` record with the reason."""
    bare = len(args) == 1 and callable(args[0]) and not kwargs
    kwargs.setdefault("klass", HaTask)
    kwargs.setdefault("auto_shortflags", False)  # SHORT_FLAGS only

    def decorate(fn):
        name = kwargs.get("name") or fn.__name__

        @functools.wraps(fn)
        def wrapper(ctx, *a, **kw):
            written = journal.outcomes_written()
            try:
                return fn(ctx, *a, **kw)
            except HaError as exc:
                if exc.code in REFUSALS and journal.outcomes_written() == written:
                    journal_refusal(ctx, fn, name, a, kw, exc)
                print(f"hatasks: error: {exc.message}", file=sys.stderr, flush=True)
                raise invoke.Exit(code=exc.code)

        return invoke.task(*args, **kwargs)(wrapper)

    if bare:
        fn = args[0]
        args = ()
        return decorate(fn)
    return decorate
