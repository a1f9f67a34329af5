"""syncsteps: the explicit step table, the recovery scripts and their installation (the
commands sent to the hosts, captured through a fake remote.run)."""

import base64
import inspect
import pathlib
import shlex
import subprocess

from invoke import Config, MockContext, Result

from hatasks import remote, syncplan, syncsteps

ROOT = pathlib.Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- recovery scripts


def test_recovery_scripts_are_valid_bash_with_paths_filled_in(tmp_path):
    for name in syncplan.RECOVERY_SCRIPTS:
        text = syncsteps.recovery_script_text(name, "/usr/lib/postgresql/15/bin")
        assert "@PGBIN@" not in text and "@LOG@" not in text and "@PGPORT@" not in text
        assert syncplan.RECOVERY_MARK in text
        f = tmp_path / name
        f.write_text(text)
        subprocess.run(["bash", "-n", str(f)], check=True)
    first = syncsteps.recovery_script_text("recovery_1st_stage", "/b")
    assert 'mv -T -- "$PGDATA" "$KEPT"' in first and "rm -rf" not in first


def test_install_recovery_sends_each_script_base64(tmp_path, monkeypatch):
    ctx = MockContext(config=Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))
    calls = []

    def fake_run(ctx, host, command, *, user="root", probe=False, **kw):
        calls.append((getattr(host, "name", host), user, command))
        if "grep -E" in command:
            return Result(stdout="recovery_1st_stage_command = 'first'\n", exited=0)
        return Result(stdout="installed\n", exited=0)

    monkeypatch.setattr(remote, "run", fake_run)
    out = syncsteps.install_recovery(ctx, ["db01"])
    assert out == {"db01": ["first", "recovery_2nd_stage", "pgpool_remote_start"]}
    installs = [c for c in calls if "base64 -d" in c[2]]
    assert [c[1] for c in installs] == ["postgres"] * 3
    assert installs[0][2].startswith("t=/var/lib/postgresql/15/data/first; printf %s ")
    b64 = shlex.split(installs[0][2].split("; ", 1)[1])[2]
    assert base64.b64decode(b64).decode() == syncsteps.recovery_script_text(
        "recovery_1st_stage", "/usr/lib/postgresql/15/bin")


def test_steps_table_runs_every_step_of_every_method():
    """Every step a plan can name has a function, and the table holds nothing else."""
    planned = {s for steps in syncplan.METHOD_STEPS.values() for s in steps}
    assert set(syncsteps.STEPS) == planned
    assert {s for group in syncplan.REBUILD.values() for s in group} <= planned
    for name, fn in syncsteps.STEPS.items():
        assert fn.__module__ == "hatasks.syncsteps", name
        assert list(inspect.signature(fn).parameters) == ["ctx", "p", "st"], name
