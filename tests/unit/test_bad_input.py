"""The bad-input matrix: every task x every option x every kind of bad value.

Generated from the root collection (a new task or option is covered without writing a
test), each cell runs the real command line in-process (invoke's ``Program.run`` with the
hatasks conventions installed, as ``inv`` runs ``tasks.py``) and asserts: exit 2, exactly one
line on stderr, no traceback, and nothing reached any host: ssh, sockets, local commands
and SQL connections are replaced by guards that record the attempt and fail.

Cells that fail because of code this test cannot change are listed in KNOWN_GAPS with the
reason; the test asserts that exactly those fail, so fixing one forces updating the list.
"""

import contextlib
import io
import socket
import subprocess

import invoke
import paramiko
import pytest
from invoke import Collection, Program

from hatasks import cli, inventory_tasks, remote
from hatasks.namespace import build

# what a task acts on: the other cluster's hosts and kind are bad values for it
TASK_KIND = {"db": "db", "pg": "db", "pgpool": "db", "sync": "db", "lb": "lb", "web": "lb"}
HOST = {"db": "db01", "lb": "lb01", None: "db01"}
OTHER = {"db": ("lb01", "lb"), "lb": ("db01", "db")}
HOST_OPTIONS = ("host", "node", "source", "target", "from", "to")
FREE_TEXT = {("notify.test", "subject")}       # a mail subject may hold ; $ ( ) and spaces
#: valid options a task needs besides its required ones, so that a cell fails on its bad
#: value and not on a missing choice (the task refuses the command line without them)
EXTRA_BASE = {"sync.cleanup": ["--delete"]}
#: options whose unknown values are not bad input (a filter of the local journal)
NOT_CHECKED = {("history", "cluster")}

COMMON = {"empty": "", "newline": "db01\n", "escape": "a\x1bb", "tab": "a\tb"}
META = {"semicolon": "x;id", "subst": "$(id)", "pipe": "a|b", "backtick": "`id`"}
WHOLE = {"word": "abc", "fraction": "1.5", "negative": "-1", "huge": "99999999999999999999"}
PORTS = {"zero": "0", "over": "70000", "word": "abc"}
CHOICE = {"unknown-choice": "bogus"}

#: cells that fail today, with why; (task, option, value name) -> reason (none left: a cell
#: that fails is a bug to fix, not to list)
KNOWN_GAPS = {}


def _kind(task):
    return TASK_KIND.get(task.split(".")[0])


def _values(task, arg):
    name = arg.name
    if arg.kind is int:
        return {**COMMON, **WHOLE}
    values = dict(COMMON)
    if (task, name) not in FREE_TEXT:
        values.update(META)
    if name in HOST_OPTIONS:
        values["unknown-host"] = "db09"
        if _kind(task) in OTHER:
            values["other-cluster-host"] = OTHER[_kind(task)][0]
    elif name == "cluster" and (task, name) not in NOT_CHECKED:
        values["unknown-cluster"] = "nope"
        if _kind(task) in OTHER:
            values["other-kind-cluster"] = OTHER[_kind(task)][1]
    elif name in ("port",):
        values.update(PORTS)
    elif name == "keep":
        values.update(WHOLE)
    elif name in ("format", "mode", "method", "side", "for", "pg"):
        values.update(CHOICE)
    return values


def _root():
    ns = build()
    if "inventory" not in ns.collections:
        ns.add_collection(Collection.from_module(inventory_tasks, name="inventory"))
    return ns


def _cells():
    out = []
    for context in _root().to_contexts():
        task = context.name
        if task.startswith("lab."):
            continue
        args = [a for a in context.args.values() if a.kind is not bool]
        for arg in args:
            for vname, value in _values(task, arg).items():
                out.append((task, arg.name, vname, value))
    return out


def _base_args(task, context, bad):
    """Valid values for the task's required options (and --yes), except the bad one."""
    argv = [] if bad in ("delete", "archive") else list(EXTRA_BASE.get(task, []))
    for arg in context.args.values():
        if arg.name == bad:
            continue
        if arg.positional:
            value = {"resource": "pgpool"}.get(arg.name, HOST[_kind(task)])
            argv += [f"--{arg.name}", value]
        elif arg.name == "yes":
            argv.append("--yes")
    return argv


class Reached(Exception):
    """A guard was called: something tried to reach a host or run a command."""


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("badinput")
    reached = []

    def guard(what):
        def fail(*a, **kw):
            reached.append(what)
            raise Reached(f"{what} was called")
        return fail

    mp.setattr(remote, "connection", guard("ssh connection"))
    mp.setattr(remote, "pg_connect", guard("sql connection"))
    mp.setattr(paramiko.SSHClient, "connect", guard("paramiko connect"))
    mp.setattr(socket, "create_connection", guard("socket"))
    mp.setattr(subprocess, "Popen", guard("local command"))
    mp.setattr(invoke.Context, "run", guard("local invoke run"))
    mp.setenv("INVOKE_HATASKS_STATE_DIR", str(tmp / "state"))
    mp.setenv("INVOKE_HATASKS_CONNECT_TIMEOUT", "1")
    cli.install()
    ns = _root()
    contexts = {c.name: c for c in ns.to_contexts()}

    def run(argv, inventory=None):
        mp.setenv("INVOKE_HATASKS_INVENTORY", str(inventory or (remote_root() / "hosts.ini")))
        del reached[:]
        out, err = io.StringIO(), io.StringIO()
        code, crash = 0, None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                Program(namespace=ns, name="hatasks", binary="inv", version="0").run(
                    ["inv", *argv])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException as exc:  # noqa: BLE001 - a traceback is what we look for
                crash = f"{type(exc).__name__}: {exc}"
                code = None
        return code, err.getvalue(), list(reached), crash

    yield run, contexts, tmp
    mp.undo()


def remote_root():
    import pathlib
    return pathlib.Path(__file__).resolve().parents[2]


def _problem(code, err, reached, crash):
    """Why a cell is not a clean refusal, or None."""
    if crash:
        return f"traceback ({crash})"
    if reached:
        return f"reached: {', '.join(sorted(set(reached)))}"
    if "Traceback" in err:
        return "traceback on stderr"
    if code != 2:
        return f"exit {code}: {err.strip()[:120]!r}"
    if err.count("\n") != 1 or not err.endswith("\n"):
        return f"{err.count(chr(10))} lines on stderr: {err!r}"
    return None


def _failing(run, contexts, cells):
    """(task, option, value name) -> why, for each cell whose bad value is not refused in one
    line with exit 2 (``_problem``)."""
    failures = {}
    for task, option, vname, value in cells:
        argv = [task, *_base_args(task, contexts[task], option), f"--{option}", value]
        why = _problem(*run(argv))
        if why:
            failures[(task, option, vname)] = why
    return failures


def test_every_task_refuses_every_bad_value_in_one_line(harness):
    run, contexts, _ = harness
    cells = _cells()
    assert len(cells) > 300
    failures = _failing(run, contexts, cells)
    unexpected = {k: v for k, v in failures.items() if k not in KNOWN_GAPS}
    fixed = sorted(k for k in KNOWN_GAPS if k not in failures)
    assert not unexpected, "cells failing and not in KNOWN_GAPS:\n" + "\n".join(
        f"{k}: {v}" for k, v in sorted(unexpected.items()))
    assert not fixed, f"cells in KNOWN_GAPS that pass now (remove them): {fixed}"


def test_task_bodies_refuse_empty_and_control_values_themselves(harness, monkeypatch):
    """The same cells with the command line's own check switched off: a value with a control
    character (a trailing newline, a tab, an escape), or an empty host, reaches the task body
    as it would from a Python caller (``sync.cleanup(ctx, host="")``), and the body refuses it
    too, in one line with exit 2, before reaching any host. (An empty --format, --cluster or
    --port from Python means the default, as None does; only the command line refuses it.)"""
    run, contexts, _ = harness
    original = cli.CheckedArgument.check

    def lax(self, value):
        return value if self.kind is str else original(self, value)

    monkeypatch.setattr(cli.CheckedArgument, "check", lax)
    cells = [c for c in _cells() if contexts[c[0]].args[c[1]].kind is str
             and (c[2] in ("newline", "escape", "tab") or (c[2] == "empty" and c[1] in HOST_OPTIONS))]
    assert len(cells) > 100
    failures = _failing(run, contexts, cells)
    assert not failures, "\n".join(f"{k}: {v}" for k, v in sorted(failures.items()))


@pytest.mark.parametrize("argv, expected", [
    (["hb.standby"], "hb.standby: missing --node"),
    (["hb.standby", "--node", "db01", "--timeout", "abc"], "--timeout 'abc': a whole number"),
    (["hb.standby", "--node", "db01", "--timeout", "1.5"], "--timeout '1.5': a whole number"),
    (["hb.log", "--host", "db01", "--lines", "abc"], "--lines 'abc': a whole number"),
    (["history", "--limit", "abc"], "--limit 'abc': a whole number"),
    (["pgpool.check", "--host", "db01", "--wait", "99999999999999999999"],
     "--wait '99999999999999999999': out of range (1-86400 seconds)"),
    (["db.switchover"], "no task named 'db.switchover'; did you mean"),
    (["vacuumdb"], "no task named 'vacuumdb'; did you mean pg.vacuum?"),
    (["hb.standby", "--nod", "db01"], "hb.standby: unknown option --nod; did you mean --node"),
    (["hb.standby", "--node", "db01\n"], "--node 'db01\\n': control characters are not allowed"),
    (["--help", "hb.standbyy"], "no task named 'hb.standbyy'; did you mean hb.standby"),
])
def test_command_line_conventions(harness, argv, expected):
    run, _, _ = harness
    code, err, reached, crash = run(argv)
    assert (code, crash, reached) == (2, None, [])
    assert err.startswith("hatasks: error: ") and err.count("\n") == 1
    assert expected in err


BROKEN = {
    "empty": "",
    "port-word": "[db]\ndb01 pgpool_node_id=0\n[db:vars]\ncluster_kind=db\npgpool_port=abc\n",
    "group-ansible-port": "[db]\ndb01\n[db:vars]\nansible_port=abc\ncluster_kind=db\n",
    "two-clusters": "[db]\ndb01\n[db:vars]\ncluster_kind=db\n[lb]\ndb01\n[lb:vars]\ncluster_kind=lb\n",
    "duplicate-node-id": "[db]\ndb01 pgpool_node_id=0\ndb02 pgpool_node_id=0\n[db:vars]\ncluster_kind=db\n",
    "pg-port-range": "[db]\ndb01 pg_port=99999\n[db:vars]\ncluster_kind=db\n",
    "unknown-kind": "[db]\ndb01\n[db:vars]\ncluster_kind=database\n",
    "no-pgdata": "[db]\ndb01 pgpool_node_id=0\n[db:vars]\ncluster_kind=db\nvip=10.0.0.1\ngroup=g\n",
    "relative-pgdata": "[db]\ndb01\n[db:vars]\ncluster_kind=db\npgdata=data\n",
    "syntax": "[db\ndb01\n",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("argv", [["status"], ["hb.status"], ["pg.status", "--cluster", "db"],
                                  ["hb.standby", "--node", "db01", "--yes"]])
def test_broken_inventories_are_refused_in_one_line(harness, name, argv):
    run, _, tmp = harness
    path = tmp / f"{name}.ini"
    path.write_text(BROKEN[name])
    code, err, reached, crash = run(argv, inventory=path)
    assert _problem(code, err, reached, crash) is None
    assert err.startswith(f"hatasks: error: {path}")


def test_inventory_check_lists_every_problem(harness):
    run, _, tmp = harness
    path = tmp / "many.ini"
    path.write_text("[db]\ndb01 pgpool_node_id=0 pg_port=0\ndb02 pgpool_node_id=0\n"
                    "[db:vars]\ncluster_kind=db\npgdata=rel\nansible_password=hunter2\n")
    code, err, reached, crash = run(["inventory.check"], inventory=path)
    assert (code, reached, crash) == (2, [], None)
    assert err == f"hatasks: error: {path}: 6 problems (listed above)\n"
