"""Ctrl-C in the middle of a mutating task, on the real lab: `sync.resync` (dump method) and
`db.failover`. Each must end with exit 130 and one paragraph on stderr naming the step that was
running (the journal's last `step` record not followed by its `checkpoint`, or the nested
operation that had not ended) and the next command; no lock may stay held; and the next command
the paragraph gives must work (`sync.resume` finishes the resync, `db.recover` brings the node
the failover left in standby back online).
"""

import json
import pathlib
import signal
import subprocess
import time

import invoke
import pytest

from hatasks import journal
from lab.core import Lab

from .conftest import INSTANCE, INV, ROOT
from .test_sync_lab import degenerate, kept_dirs, pool, wait_for

pytestmark = pytest.mark.lab

LAB = Lab(INSTANCE, out=lambda *a, **k: None)


def records(state_dir):
    path = pathlib.Path(state_dir) / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def running_step(recs):
    """The step the journal says was running: begun (`step`) and never checkpointed."""
    begun = None
    for r in recs:
        if r.get("event") == "step":
            begun = r.get("step")
        elif r.get("event") == "checkpoint" and r.get("step") == begun:
            begun = None
    return begun


def interrupt(inv, args, ready, timeout=180):
    """Start `inv ARGS`, wait until READY(journal records) is true, send SIGINT; return
    (exit code, stdout, stderr as one line, seconds from the signal to the exit)."""
    proc = subprocess.Popen([INV, *args], cwd=ROOT, env=inv.env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        wait_for(f"{args[0]} to reach the point to interrupt",
                 lambda: ready(records(inv.state_dir)), timeout, 0.05)
    except AssertionError:
        proc.kill()
        raise
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - t0
    print(f"\n{args[0]}: exit {proc.returncode} {took:.1f}s after SIGINT\n{err}")
    return proc.returncode, out, " ".join(err.split()), err, took


def assert_unlocked(inv, cluster="db"):
    ctx = invoke.Context(invoke.Config(overrides={"hatasks": {"state_dir": str(inv.state_dir)}}))
    assert journal.lock_held(ctx, cluster) is None


def healthy(timeout=120):
    deadline = time.monotonic() + timeout
    while LAB.problems() and time.monotonic() < deadline:
        time.sleep(1)
    assert not LAB.problems(), LAB.problems()


def one_paragraph(err):
    assert "Traceback" not in err
    assert "\n\n" not in err.strip()
    assert err.startswith("hatasks: ")


def test_sigint_during_a_dump_resync_names_the_running_step_then_resume(inv):
    source, _ = degenerate(inv, "db02", f"intr-{time.time():.0f}", n=3)
    target = "db02"
    before = kept_dirs(target)
    # the import is the step that runs longest with a small database; interrupt once it began
    code, out, text, err, took = interrupt(
        inv, ["sync.resync", "--method", "dump", "--yes"],
        lambda recs: running_step(recs) == "import")
    recs = records(inv.state_dir)
    step = running_step(recs)
    assert code == 130, (out, err)
    one_paragraph(err)
    assert step is not None
    assert text.startswith(f"hatasks: sync.resync was interrupted (SIGINT (Ctrl-C)) while"
                           f" running step {step}.")
    assert f"stopped in step {step}" in text and "start_target_maint" in text
    assert "Next: inv sync.status" in text and "inv sync.resume" in text
    assert "inv sync.rollback" in text
    assert recs[-1]["event"] == "failed" and recs[-1]["message"] == "interrupted"
    assert_unlocked(inv)
    # what the paragraph says to run: sync.status, then sync.resume finishes the resync
    status = json.loads(inv("sync.status", "--format", "json").stdout)["resync"]
    assert status["finished"] is False and step not in status["done"]
    res = inv("sync.resume", "--yes", timeout=600)
    assert "resync resumed and done" in res.stdout
    data = pool(inv)
    assert [b["status"] for b in data["backends"]] == ["up", "up"] and not data["degenerated"]
    inv("sync.verify")
    assert_unlocked(inv)
    inv("sync.cleanup", "--delete", "--yes")
    for name in sorted(set(kept_dirs(target)) - set(before)):
        inv("sync.cleanup", "--remove-datadir", name, "--host", target, "--yes")


def test_sigint_during_db_failover_names_the_running_operation_then_recover(inv):
    healthy()

    def standby_begun(recs):
        return any(r.get("event") == "start" and r.get("action") == "hb.standby" for r in recs)

    code, out, text, err, took = interrupt(inv, ["db.failover", "--yes"], standby_begun)
    assert code == 130, (out, err)
    one_paragraph(err)
    recs = records(inv.state_dir)
    nested = [r["action"] for r in recs if r.get("event") == "start" and r.get("parent")]
    ended = {r["action"] for r in recs if r.get("event") == "done" and r.get("parent")}
    unfinished = [a for a in nested if a not in ended]
    assert text.startswith("hatasks: db.failover was interrupted (SIGINT (Ctrl-C))")
    if unfinished:   # normally hb.standby, still waiting for the group to move
        assert f"while running {unfinished[-1]}" in text
    assert "db.failover on cluster db" in text
    assert "Next: inv db.diagnose" in text
    assert_unlocked(inv)
    # what the paragraph says: db.diagnose shows where things stand; db.recover finishes it
    diag = inv("db.diagnose", "--format", "json", check=False)
    assert diag.returncode in (0, 3), diag.stderr
    inv("db.recover", "--yes", timeout=300)
    healthy()
    assert_unlocked(inv)
