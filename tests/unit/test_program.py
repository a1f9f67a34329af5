"""The command line as operators get it: the installed ``hatasks`` command, its configuration,
short flags with one meaning, ``fab -H``, and a readable ``history``."""

import collections
import os
import pathlib
import shutil
import subprocess
import sys

import fabric
import invoke
import pytest

from hatasks import base, core_tasks, journal
from hatasks.namespace import build
from hatasks.program import HaConfig
from conftest import HOSTS_INI, ROOT, make_ctx

ENTRY = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from hatasks.program import main; main()"


def hatasks(*args, cwd, env=None):
    """The ``hatasks`` entry point in a new process, as the console script runs it."""
    return subprocess.run([sys.executable, "-c", ENTRY, *args], cwd=cwd, text=True,
                          capture_output=True, timeout=60,
                          env=dict(os.environ, **(env or {})))


# --------------------------------------------------------------------------- short flags

def _shorts(collection):
    seen = collections.defaultdict(set)

    def walk(coll, prefix):
        for name, t in coll.tasks.items():
            for arg in t.get_arguments():
                long = next(n for n in arg.names if len(n) > 1)
                for short in (n for n in arg.names if len(n) == 1):
                    seen[short].add(long)
        for name, sub in coll.collections.items():
            walk(sub, f"{prefix}{name}.")

    walk(collection, "")
    return seen


def test_every_short_flag_has_one_meaning_in_every_task():
    sys.path.insert(0, str(ROOT))
    try:
        import tasks  # the checkout's root collection, lab included
    finally:
        sys.path.remove(str(ROOT))
    for coll in (tasks.ns, build()):
        shorts = _shorts(coll)
        twice = {s: sorted(longs) for s, longs in shorts.items() if len(longs) > 1}
        assert twice == {}
        # only the documented ones, each with its documented meaning
        assert {s: longs.pop() for s, longs in shorts.items()} == {
            short: long for long, short in base.SHORT_FLAGS.items() if short in shorts}
    # db.recover's timeout is -t like everywhere, its --to has no short flag
    args = {a.name: a.names for a in tasks.ns.collections["db"]["recover"].get_arguments()}
    assert set(args["timeout"]) == {"timeout", "t"} and args["to"] == ("to",)


# --------------------------------------------------------------------------- fab -H

@base.task
def _one_host(ctx, host, timeout=5):
    return host


@base.task
def _one_node(ctx, node=None, cluster=None):
    return node


@base.task
def _whole_cluster(ctx, cluster=None):
    return "ran"


def _connection(name):
    return fabric.Connection(name, config=fabric.Config(overrides={"load_ssh_configs": False}))


def test_fab_host_fills_the_task_host_or_node_option():
    assert _one_host(_connection("db01"), host=None) == "db01"
    assert _one_host(_connection("db01"), host="db01") == "db01"
    assert _one_node(_connection("db02")) == "db02"
    # invoke's own context: nothing to fill
    assert _one_node(invoke.Context()) is None


def test_fab_host_is_refused_where_it_cannot_apply(capsys):
    with pytest.raises(invoke.Exit) as exc:
        _whole_cluster(_connection("db01"))
    assert exc.value.code == 2
    assert "does not act on one host" in capsys.readouterr().err
    with pytest.raises(invoke.Exit) as exc:
        _one_host(_connection("db01"), host="db02")
    assert exc.value.code == 2
    assert "disagree" in capsys.readouterr().err


def test_fab_host_makes_the_host_option_optional_on_the_command_line():
    def positional(t):
        return {a.name for a in t.get_arguments() if a.positional}

    assert positional(_one_host) == {"host"}
    base.hosts_from_fab(True)
    try:
        assert positional(_one_host) == set()
    finally:
        base.hosts_from_fab(False)


def test_fab_reads_the_same_inventory_variable_as_inv(tmp_path):
    fab = pathlib.Path(sys.executable).parent / "fab"
    env = dict(os.environ, INVOKE_HATASKS_INVENTORY=str(tmp_path / "site.ini"),
               FABRIC_HATASKS_INVENTORY=str(tmp_path / "other.ini"))
    p = subprocess.run([str(fab), "-r", str(ROOT), "hb.status"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert f"{tmp_path / 'site.ini'}: cannot read inventory" in p.stderr


# --------------------------------------------------------------------------- the program

def test_program_settings_come_from_hatasks_env_yaml_and_inventory_flag(tmp_path):
    (tmp_path / "hatasks.yaml").write_text("hatasks:\n  inventory: /from/yaml.ini\n")
    p = hatasks("hb.status", cwd=tmp_path)
    assert p.returncode == 2 and "/from/yaml.ini: cannot read inventory" in p.stderr
    p = hatasks("hb.status", cwd=tmp_path, env={"HATASKS_INVENTORY": "/from/env.ini"})
    assert p.returncode == 2 and "/from/env.ini: cannot read inventory" in p.stderr
    p = hatasks("--inventory", "flag.ini", "hb.status", cwd=tmp_path,
                env={"HATASKS_INVENTORY": "/from/env.ini"})
    assert p.returncode == 2 and f"{tmp_path / 'flag.ini'}: cannot read inventory" in p.stderr


def test_program_config_names():
    conf = HaConfig()
    assert conf.prefix == "hatasks"
    conf.load_defaults({"hatasks": {"inventory": "hosts.ini", "state_dir": ".hatasks"},
                        "run": {"echo": False}}, merge=True)
    os.environ["HATASKS_STATE_DIR"] = "/srv/state"
    os.environ["HATASKS_RUN_ECHO"] = "1"
    try:
        conf.load_shell_env()
    finally:
        del os.environ["HATASKS_STATE_DIR"], os.environ["HATASKS_RUN_ECHO"]
    assert conf.hatasks.state_dir == "/srv/state"
    assert conf.run.echo is True


def test_version_and_completion_do_not_import_the_tasks(tmp_path):
    probe = ENTRY.replace("main()", "sys.argv[1:] = [sys.argv[1]]; import atexit;"
                          " atexit.register(lambda: print(sorted(m for m in sys.modules if m in"
                          " ('hatasks.db', 'fabric', 'paramiko', 'psycopg2'))));"
                          " main()")
    p = subprocess.run([sys.executable, "-c", probe, "--version"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert p.stdout.splitlines() == ["hatasks 0.1.0", "[]"]


def test_a_task_imports_only_the_modules_it_needs(tmp_path):
    probe = ENTRY.replace("main()", "import atexit; atexit.register(lambda: print(sorted(m for m"
                          " in sys.modules if m in ('hatasks.db', 'hatasks.sync', 'hatasks.hb',"
                          " 'fabric', 'paramiko', 'psycopg2')))); main()")
    p = subprocess.run([sys.executable, "-c", probe, "history", "--format", "json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, HATASKS_STATE_DIR=str(tmp_path / "state")))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "[]"  # no task module but history's, no ssh, no SQL
    # a mistyped name still gets the closest names of the whole collection
    p = hatasks("stats", cwd=tmp_path)
    assert p.returncode == 2 and "status" in p.stderr


def test_the_checkout_lists_the_lab_the_program_does_not(tmp_path):
    sys.path.insert(0, str(ROOT))
    try:
        import tasks
    finally:
        sys.path.remove(str(ROOT))
    assert "lab" in tasks.ns.collections
    assert "lab" not in build().collections
    p = hatasks("-l", cwd=tmp_path)
    assert p.returncode == 0 and "hb.standby" in p.stdout and "lab." not in p.stdout


# --------------------------------------------------------------------------- history

def _newest(ctx, host, reason):
    journal.Journal(ctx).write("newest", "db", "newest", {}, newest=host,
                               evidence={"source": "SHOW pool_nodes via db02",
                                         "degenerated": True, "reason": reason})


def test_history_details_are_key_values_and_identical_newest_records_fold(tmp_path, capsys):
    ctx = make_ctx(tmp_path)
    _newest(ctx, "db02", "db.diagnose saw pgpool degenerated")
    journal.Journal(ctx).write("start", "db", "db.recover", {"method": "dump", "to": None,
                                                             "failback": False})
    _newest(ctx, "db02", "db.diagnose saw pgpool degenerated")
    _newest(ctx, "db02", "db.diagnose saw pgpool degenerated")
    _newest(ctx, "db01", "pgpool now names db01")
    journal.Journal(ctx).write("failed", "db", "db.recover", {}, message="needs a human",
                               code=3)
    core_tasks.history(ctx, format="table", limit=0)
    out = capsys.readouterr().out
    assert "{" not in out and "'" not in out
    lines = [line for line in out.splitlines() if " newest " in line]
    assert len(lines) == 2  # db02 three times (one row), then db01
    assert ('newest=db02 source="SHOW pool_nodes via db02" degenerated=yes'
            ' reason="db.diagnose saw pgpool degenerated" (recorded again 2 times, last')\
        in lines[0]
    assert "newest=db01" in lines[1] and "recorded again" not in lines[1]
    start, = [line for line in out.splitlines() if " start " in line]
    assert start.rstrip().endswith(" method=dump")  # to=None and failback=False left out
    assert "needs a human code=3" in out
    # JSON keeps every record as written
    core_tasks.history(ctx, format="json", limit=0)
    assert capsys.readouterr().out.count('"event": "newest"') == 4


# --------------------------------------------------------------------------- the wheel

def test_wheel_installs_a_working_hatasks_command(tmp_path):
    """pip wheel . -> a new venv (no pip of its own, no network) -> hatasks from elsewhere."""
    try:
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"{exc.name} is missing (the test extra of setup.cfg installs it)")
    dist = tmp_path / "dist"
    # build from a copy: setuptools writes build/ and *.egg-info into the source tree
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".hatasks*", ".state", "tests",
        "lab", "bench", "docs"))
    build_env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(dist), str(src)],
                   check=True, env=build_env, cwd=tmp_path, timeout=300,
                   capture_output=True)
    whl, = dist.glob("hatasks-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "-q",
                    "--no-deps", "--no-index", str(whl)], check=True, env=build_env,
                   timeout=300, capture_output=True)
    # the dependencies: those of this interpreter (fabric, invoke, psycopg2, tabulate)
    site, = (venv / "lib").glob("python3*/site-packages")
    (site / "deps.pth").write_text(str(pathlib.Path(invoke.__file__).parents[1]) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = str(venv / "bin" / "hatasks")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HATASKS_", "PYTHONPATH"))}

    def run(*args):
        return subprocess.run([cmd, *args], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=60)

    p = run("--version")
    assert (p.returncode, p.stdout) == (0, "hatasks 0.1.0\n")
    p = run("-l")
    assert p.returncode == 0, p.stderr
    assert "status" in p.stdout and "sync.resync" in p.stdout and "lab." not in p.stdout
    site = tmp_path / "site"  # the lab's inventory with the ssh_config it names (lab.up writes it)
    (site / "lab").mkdir(parents=True)
    (site / "lab" / "ssh_config").write_text("Host db01\n    HostName 10.231.0.11\n")
    (site / "hosts.ini").write_text(HOSTS_INI.read_text())
    p = run("hb.standby", "--node", "db99", "--inventory", str(site / "hosts.ini"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "db99" in p.stderr
    p = run("hb.stats")
    assert p.returncode == 2 and "hb.status" in p.stderr
    p = subprocess.run([str(vpy), "-c", "import hatasks; print(hatasks.__file__)"],
                       cwd=elsewhere, env=env, capture_output=True, text=True)
    assert p.stdout.startswith(str(venv))
    p = run("--print-completion-script", "bash")
    assert p.returncode == 0 and "complete -F _complete_hatasks -o default hatasks" in p.stdout
