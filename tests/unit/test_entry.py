"""``inv`` and ``fab`` from the checkout (tasks.py, fabfile.py) import only what their command
line needs: the lab's tasks only for a ``lab.*`` task or a task list, help or completion; the
hatasks task modules only of the tasks named (``namespace.parts_needed``)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from fabric.main import make_program as make_fab
from invoke import Program

from hatasks.namespace import parts_needed
from hatasks.program import make_program
from conftest import ROOT

#: prints, at exit, the lab and hatasks task modules the process imported (stderr, one JSON list)
WATCH = ("import atexit, json, sys\n"
         "atexit.register(lambda: sys.stderr.write('\\nMODULES ' + json.dumps(sorted("
         "m for m in sys.modules if m.startswith(('lab', 'hatasks.'))))))\n")


def parsed(program, *words):
    """``program`` after parsing its own options of ``words`` (as ``Program.run`` does before
    it imports tasks.py or fabfile.py)."""
    program.normalize_argv([program.binary or "inv", *words])
    program.parse_core_args()
    return program


def run(entry, *words):
    """``inv``/``fab`` (``entry``: invoke.main or fabric.main) on the checkout in a new
    process: its exit code, stdout and the modules it imported."""
    code = WATCH + f"from {entry} import program; program.run()"
    p = subprocess.run([sys.executable, "-c", code, "-r", str(ROOT), *words], cwd=ROOT.parent,
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, INVOKE_HATASKS_INVENTORY=str(ROOT / "hosts.ini")))
    line = next(x for x in p.stderr.splitlines() if x.startswith("MODULES "))
    return p.returncode, p.stdout, set(json.loads(line.split(" ", 1)[1]))


@pytest.mark.parametrize("words, parts", [
    (["status"], {"status"}),
    (["--dry", "hb.status"], {"hb"}),
    (["hb.status", "pgpool.status"], {"hb", "pgpool"}),
    (["db.recover", "--timeout", "30", "--host", "db01"], {"db"}),
    (["lab.status"], {"lab"}),
    (["status", "--help"], {"status"}),  # help of one task: its part is enough
    (["-l"], None),
    (["--list"], None),
    (["-h"], None),
    (["--help", "hb.status"], None),
    (["--complete", "--", "inv", "hb.st"], None),
    ([], None),  # no task: invoke prints the help of the whole collection
    (["stats"], None),  # a mistyped name: the closest names come from the whole collection
])
def test_parts_needed_by_an_inv_command_line(words, parts):
    assert parts_needed(parsed(Program(binary="inv"), *words)) == parts


def test_parts_needed_by_fab_with_hosts():
    fab = parsed(make_fab(), "-H", "db01", "pg.status")
    assert fab.args.hosts.value == "db01"
    assert parts_needed(fab) == {"pg"}
    assert parts_needed(parsed(make_fab(), "-H", "db01", "-l")) is None


def test_parts_needed_without_a_parsed_command_line():
    assert parts_needed(None) is None  # tasks.py imported outside inv: the whole collection
    assert parts_needed(Program()) is None


def test_inv_status_imports_neither_the_lab_nor_other_task_modules():
    rc, out, mods = run("invoke.main", "status", "--help")
    assert rc == 0 and "Usage: inv" in out
    assert "hatasks.status" in mods
    assert not {m for m in mods if m == "lab" or m.startswith("lab.")}
    assert not mods & {"hatasks.db", "hatasks.lb", "hatasks.sync", "hatasks.lock_tasks"}


def test_inv_of_two_tasks_imports_both_parts_only():
    rc, out, mods = run("invoke.main", "--dry", "hb.status", "--help", "pgpool.status")
    assert rc == 0 and "hb.status" in out
    assert {"hatasks.hb", "hatasks.pgpool"} <= mods
    assert not mods & {"lab.tasks", "hatasks.db", "hatasks.status"}


def test_inv_lab_task_imports_the_lab_only():
    rc, out, mods = run("invoke.main", "lab.status", "--help")
    assert rc == 0 and "lab.status" in out
    assert "lab.tasks" in mods and "hatasks.db" not in mods


@pytest.mark.parametrize("entry", ["invoke.main", "fabric.main"])
def test_the_task_list_still_has_every_part_and_the_lab(entry):
    rc, out, mods = run(entry, "-l")
    assert rc == 0
    for name in ("lab.up", "lab.status", "db.recover", "hb.status", "status", "history"):
        assert f"  {name}" in out
    assert "lab.tasks" in mods


def test_completion_and_task_help_see_the_whole_collection():
    rc, out, _ = run("invoke.main", "--complete", "--", "inv", "lab.u")
    assert rc == 0 and "lab.up" in out.split() and "db.recover" in out.split()
    rc, out, mods = run("invoke.main", "--help", "lab.up")
    assert rc == 0 and "Usage: inv" in out and "lab.tasks" in mods


def test_fab_with_hosts_imports_only_the_task_part():
    rc, out, mods = run("fabric.main", "-H", "db01", "pg.status", "--help")
    assert rc == 0 and "pg.status" in out
    assert "hatasks.pg" in mods and "lab.tasks" not in mods and "hatasks.db" not in mods


def test_a_mistyped_task_still_gets_the_closest_names():
    rc, out, mods = run("invoke.main", "stauts")
    assert rc == 2 and "lab.tasks" in mods  # the whole collection was searched


# --------------------------------------------------------------------------- bytecode cache

@pytest.mark.parametrize("dont_write", ["", "1"])
def test_inv_caches_the_package_bytecode_as_the_interpreter_would(tmp_path, dont_write):
    """invoke turns off .pyc writing (for tasks.py); without a cache every ``inv`` compiled
    the whole package again. The package's modules are cached unless the interpreter is told
    not to (PYTHONDONTWRITEBYTECODE); tasks.py itself stays uncached, as invoke wants."""
    shutil.copytree(ROOT / "hatasks", tmp_path / "hatasks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tasks.py", tmp_path / "tasks.py")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE=dont_write)
    p = subprocess.run([sys.executable, "-c", "from invoke.main import program; program.run()",
                        "-r", str(tmp_path), "status", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    cached = {f.name.split(".")[0] for f in (tmp_path / "hatasks").glob("__pycache__/*.pyc")}
    assert ({"status", "namespace", "crm"} <= cached) is (not dont_write)
    assert cached if not dont_write else not cached
    assert not list(tmp_path.glob("__pycache__/tasks*"))


def test_the_hatasks_command_caches_bytecode_as_the_interpreter_would():
    arg = next(a for a in make_program().core_args() if a.name == "write-pyc")
    assert arg.default is (not sys.flags.dont_write_bytecode)
