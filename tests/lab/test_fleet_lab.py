"""Several lab instances as one site (`inv lab.fleet-inventory`): one inventory reaches every
cluster of every instance, by its own name. Runs only when HATASKS_FLEET names the instances
(e.g. HATASKS_FLEET=6,7); each is brought up first (idempotent)."""

import json
import os
import subprocess

import pytest

from .conftest import INV, ROOT

FLEET = os.environ.get("HATASKS_FLEET", "")
pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(not FLEET, reason="set HATASKS_FLEET=6,7 to test a lab fleet")]


def inv(env, *args):
    proc = subprocess.run([INV, *args], cwd=ROOT, env=env, text=True, capture_output=True,
                          timeout=900, input="")
    assert proc.returncode == 0, f"inv {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def test_one_inventory_reaches_every_cluster_of_the_fleet(tmp_path):
    instances = [int(n) for n in FLEET.split(",")]
    for n in instances:
        inv(dict(os.environ, HATASKS_LAB=str(n)), "lab.up")
    path = inv(dict(os.environ), "lab.fleet-inventory", "--instances", FLEET).strip()
    env = dict(os.environ, INVOKE_HATASKS_INVENTORY=path,
               INVOKE_HATASKS_STATE_DIR=str(tmp_path / "state"))
    locks = json.loads(inv(env, "lock.show", "--format", "json"))
    names = {f"{kind}{n}" for n in instances for kind in ("db", "lb")}
    assert set(locks) == names
    for name, stores in locks.items():
        # every cluster's CIB and both hosts answered, each in its own instance
        assert [s["state"] for s in stores] == ["free", "free", "free"], (name, stores)
        assert stores[0]["node"].endswith(f"-{name[2:]}")
    for n in instances:
        pool = json.loads(inv(env, "pgpool.status", "--cluster", f"db{n}", "--format", "json"))
        assert pool["reachable"] and pool["cluster"] == f"db{n}"
        # read through that instance's own hosts
        assert pool["via"].endswith(f"-{n}")
