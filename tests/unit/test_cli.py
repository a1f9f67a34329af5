"""hatasks.cli and hatasks.base: command-line conventions, interrupts, a closed stdout.

The interrupt and pipe tests run the real ``inv`` in a subprocess on a tiny collection of
harmless tasks written here (no host is involved), and send real signals.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from hatasks import base

ROOT = pathlib.Path(__file__).resolve().parents[2]
INV = pathlib.Path(sys.executable).with_name("inv")

TASKS = '''
import time
from invoke import Collection
from hatasks import cli, journal
from hatasks.base import task
from hatasks.config import DEFAULTS

cli.install()


@task
def sleepy(c):
    """Read-only: prints ready, then waits."""
    print("ready", flush=True)
    time.sleep(60)


@task
def hold(c):
    """A journaled operation that never finishes."""
    with journal.operation(c, "db", "db.hold", {"x": 1}, yes=True) as op:
        op.checkpoint("first")
        print("ready", flush=True)
        time.sleep(60)


@task
def stepping(c):
    """A journaled operation whose second step never ends."""
    with journal.operation(c, "db", "sync.stepping", {}, yes=True) as op:
        op.step("first")
        op.checkpoint("first")
        op.step("second")
        print("ready", flush=True)
        time.sleep(60)


@task
def spew(c):
    for i in range(200000):
        print(f"line {i}")


ns = Collection()
db = Collection("db")
db.add_task(hold)
db.add_task(sleepy)
sync = Collection("sync")
sync.add_task(hold)
sync.add_task(stepping)
ns.add_collection(db)
ns.add_collection(sync)
ns.add_task(spew)
ns.configure(DEFAULTS)
'''


@pytest.fixture
def env(tmp_path):
    (tmp_path / "harmless.py").write_text(TASKS)
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT)
    e["INVOKE_HATASKS_STATE_DIR"] = str(tmp_path / "state")
    e["INVOKE_HATASKS_INVENTORY"] = str(ROOT / "hosts.ini")
    e["INVOKE_HATASKS_CLUSTER_STATE"] = "0"  # the lock stays local: no lab behind hosts.ini here
    return e


def _start(tmp_path, env, *args):
    p = subprocess.Popen([str(INV), "-r", str(tmp_path), "-c", "harmless", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         env=env, text=True, cwd=str(tmp_path))
    assert p.stdout.readline().strip() == "ready"
    return p


def _interrupt(tmp_path, env, task, sig=signal.SIGINT):
    """Run ``task`` (it prints ready, then waits), send it ``sig``; return its exit code, its
    stderr and that stderr on one line (the paragraph it prints is wrapped)."""
    p = _start(tmp_path, env, task)
    p.send_signal(sig)
    _, err = p.communicate(timeout=20)
    return p.returncode, err, " ".join(err.split())


def _journal(tmp_path):
    path = tmp_path / "state" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("sig, code, why", [
    (signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_signal_during_an_operation_names_the_record_and_the_next_command(
        tmp_path, env, sig, code, why):
    rc, err, text = _interrupt(tmp_path, env, "db.hold", sig)
    assert rc == code
    assert "Traceback" not in err
    assert text.startswith(f"hatasks: db.hold was interrupted ({why}")
    assert "db.hold on cluster db" in text and "steps finished: first" in text
    assert "journal.jsonl" in text
    assert "Next: inv db.diagnose" in text
    assert "\n\n" not in err.strip()   # one paragraph
    events = [r["event"] for r in _journal(tmp_path)]
    assert events[-1] == "failed" and _journal(tmp_path)[-1]["message"] == "interrupted"


def test_interrupted_sync_task_points_at_resume_and_rollback(tmp_path, env):
    rc, err, text = _interrupt(tmp_path, env, "sync.hold")
    assert rc == 130
    assert "inv sync.resume" in text and "inv sync.rollback" in text


def test_interrupt_names_the_step_that_was_running(tmp_path, env):
    rc, err, text = _interrupt(tmp_path, env, "sync.stepping")
    assert rc == 130
    assert "sync.stepping was interrupted (SIGINT (Ctrl-C)) while running step second." in text
    assert "(began " in text and "steps finished: first) stopped in step second" in text
    assert [r["event"] for r in _journal(tmp_path)] == [
        "start", "step", "checkpoint", "step", "failed"]


def test_interrupted_read_only_task_says_nothing_changed(tmp_path, env):
    rc, err, text = _interrupt(tmp_path, env, "db.sleepy", signal.SIGTERM)
    assert rc == 143
    assert "db.sleepy was interrupted (SIGTERM) before it began any operation" in text
    assert "nothing was changed" in text and "Traceback" not in err


def test_closed_stdout_pipe_ends_quietly_with_141(tmp_path, env):
    p = subprocess.Popen([str(INV), "-r", str(tmp_path), "-c", "harmless", "spew"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         cwd=str(tmp_path))
    p.stdout.readline()
    p.stdout.close()          # the reader goes away, as `| head -1` does
    err = p.stderr.read().decode()
    p.wait(timeout=20)
    assert p.returncode == 141
    assert err == ""


def test_parse_errors_exit_2_with_one_line(tmp_path, env):
    (tmp_path / "harmless.py").write_text(TASKS)
    cases = {
        ("db.hol",): "no task named 'db.hol'; did you mean db.hold",
        ("spew", "--x"): "spew: unknown option --x (inv --help spew",
        ("--help", "spwe"): "no task named 'spwe'; did you mean spew",
    }
    for args, expected in cases.items():
        r = subprocess.run([str(INV), "-r", str(tmp_path), "-c", "harmless", *args],
                           capture_output=True, text=True, env=env, cwd=str(tmp_path))
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and expected in r.stderr, (args, r.stderr)


def test_interrupt_report_wording():
    ops = [{"op": "x", "action": "db.failover", "cluster": "db", "started": "T",
            "outcome": "failed", "checkpoints": [], "running": None, "parent": None},
           {"op": "y", "action": "hb.standby", "cluster": "db", "started": "T", "outcome": "done",
            "checkpoints": [], "running": None, "parent": "x"},
           {"op": "z", "action": "hb.online", "cluster": "db", "started": "T",
            "outcome": "failed", "checkpoints": [], "running": None, "parent": "x"}]
    text = base.interrupt_report("db.failover", "SIGINT (Ctrl-C)", ops, "/s/journal.jsonl")
    assert text == (
        "hatasks: db.failover was interrupted (SIGINT (Ctrl-C)) while running hb.online. The"
        " journal (/s/journal.jsonl) records: db.failover on cluster db (began T, steps"
        " finished: hb.standby) stopped in hb.online. What was running may be half done."
        " Next: inv db.diagnose to see the state of the cluster before anything"
        " else.")
    resync = [{"op": "r", "action": "sync.resync", "cluster": "db", "started": "T",
               "outcome": "failed", "checkpoints": ["plan", "stop_pgpool"],
               "running": "dump", "parent": None}]
    text = base.interrupt_report("sync.resync", "SIGTERM", resync)
    assert text.startswith("hatasks: sync.resync was interrupted (SIGTERM) while running step"
                           " dump. The journal records: sync.resync on cluster db (began T,"
                           " steps finished: plan, stop_pgpool) stopped in step dump.")
    assert "inv sync.resume" in text
    assert "lb.diagnose" in base.next_command("lb.failover", [])


def test_signal_handlers_are_restored_after_a_task(tmp_path):
    from invoke import Context

    seen = []

    @base.task
    def t(c):
        seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    t(Context())
    assert seen[0] is base._raise_terminated
    assert signal.getsignal(signal.SIGTERM) is before
    assert time.time()  # noqa: the task ran in this process
