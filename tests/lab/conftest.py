"""Lab tests: they run against the real 4-host lab (real Pacemaker, pgpool-II, PostgreSQL, Apache, ssh).

The lab instance is chosen with HATASKS_LAB (default 0). Instance 0 is described by the top-level
hosts.ini; instance N by lab/.state/N/hosts.ini, which `inv lab.up` writes. The session fixture
`lab` brings the instance up (idempotent) before the first lab test.

Tasks are run the way an operator runs them: `.venv/bin/inv ...` in a subprocess, with the
instance's inventory and a state dir of the test session's own.
"""

import os
import pathlib
import subprocess
import sys

import invoke
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
INSTANCE = int(os.environ.get("HATASKS_LAB", "0"))
INV = str(pathlib.Path(sys.executable).parent / "inv")


def inventory_path():
    """The inventory of this lab instance."""
    if INSTANCE == 0:
        return ROOT / "hosts.ini"
    return ROOT / "lab" / ".state" / str(INSTANCE) / "hosts.ini"


def lab_env(state_dir):
    env = dict(os.environ)
    env["HATASKS_LAB"] = str(INSTANCE)
    if INSTANCE:
        env["INVOKE_HATASKS_INVENTORY"] = str(ROOT / "lab" / ".state" / str(INSTANCE) / "hosts.ini")
    env["INVOKE_HATASKS_STATE_DIR"] = str(state_dir)
    return env


class Inv:
    """Runs `inv ARGS...` from the repo root against this lab instance."""

    def __init__(self, state_dir):
        self.state_dir = pathlib.Path(state_dir)
        self.env = lab_env(self.state_dir)

    def __call__(self, *args, check=True, timeout=600, input=None):
        proc = subprocess.run(
            [INV, *args], cwd=ROOT, env=self.env, text=True, capture_output=True,
            timeout=timeout, input=input if input is not None else "",
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"inv {' '.join(args)} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """The lab instance, up and healthy; yields an Inv runner bound to it."""
    runner = Inv(tmp_path_factory.mktemp("hatasks-state"))
    # In CI the machine is CI's own: a lab still alive from another checkout (the session
    # before it) is replaced. Elsewhere lab.up refuses to touch another checkout's live lab.
    force = ["--force"] if os.environ.get("CI") == "true" else []
    runner("lab.up", *force, timeout=900)
    yield runner


@pytest.fixture
def inv(lab, tmp_path):
    """An Inv runner with a fresh state dir (journal, locks) for one test."""
    return Inv(tmp_path / "state")


@pytest.fixture
def hctx(lab, tmp_path):
    """A hatasks context on this lab instance, for direct SQL and commands in the tests."""
    return invoke.Context(invoke.Config(overrides={"hatasks": {
        "inventory": str(inventory_path()), "state_dir": str(tmp_path / "hctx"),
        "connect_timeout": 10}}))
