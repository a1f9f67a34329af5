"""Several lab instances as one site (`inv lab.fleet-inventory`): one inventory reaches every
cluster of every instance by its own name; `status` shows every cluster, names a fault with its
cluster, and `--cluster` chooses.

Which instances: HATASKS_FLEET=6,7 names them (a developer's own instances). Without it, the
test runs only on instance 0 (CI's: the top-level hosts.ini) and makes the fleet of instances 0
and 1, bringing up instance 1 for its own duration and taking it down at the end. A session on
any other instance (another helper's lab) skips it, so it never starts an instance somebody else
may be using. Instances the test brings up it takes down; the fault goes into the last instance
and is healed when that instance was already up before the test.
"""

import json
import os
import subprocess

import pytest

from .conftest import INSTANCE, INV, ROOT

FLEET = os.environ.get("HATASKS_FLEET", "")


def fleet_instances():
    if FLEET:  # the session's own instance (HATASKS_LAB) must be one of them
        chosen = [int(n) for n in FLEET.split(",") if n.strip()]
        return chosen if INSTANCE in chosen else []
    if INSTANCE == 0:
        return [0, 1]
    return []


pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(not fleet_instances(),
                                 reason=f"lab instance {INSTANCE}: the fleet test runs on "
                                        "instance 0 (CI), or set HATASKS_FLEET=6,7 with "
                                        "HATASKS_LAB one of them")]


def run(env, *args, check=True, timeout=900):
    proc = subprocess.run([INV, *args], cwd=ROOT, env=env, text=True, capture_output=True,
                          timeout=timeout, input="")
    if check:
        assert proc.returncode == 0, (f"inv {' '.join(args)} exited {proc.returncode}\n"
                                      f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def lab_env(n):
    return dict(os.environ, HATASKS_LAB=str(n))


def is_up(n):
    info = json.loads(run(lab_env(n), "lab.status", "--format", "json").stdout)
    return info["state"] == "up"


@pytest.fixture(scope="module")
def fleet(lab, tmp_path_factory):
    """(instances, env with the fleet inventory): every instance up; those this test started
    are taken down at the end."""
    instances = fleet_instances()
    started = []
    try:
        for n in instances:
            # CI's fleet (no HATASKS_FLEET): instance 1 is the test's own even when a killed
            # run left it up; a developer's instance that was up before is left up
            if n != INSTANCE and (not FLEET or not is_up(n)):
                started.append(n)
            if n != INSTANCE:
                run(lab_env(n), "lab.up", *(["--force"] if os.environ.get("CI") == "true" else []))
        path = run(dict(os.environ), "lab.fleet-inventory", "--instances",
                   ",".join(map(str, instances))).stdout.strip()
        # lock.show reads the locks kept in each cluster (hatasks.cluster_state)
        env = dict(os.environ, INVOKE_HATASKS_INVENTORY=path, INVOKE_HATASKS_CLUSTER_STATE="1",
                   INVOKE_HATASKS_STATE_DIR=str(tmp_path_factory.mktemp("fleet-state")))
        yield instances, started, env
    finally:
        for n in started:
            run(lab_env(n), "lab.down", check=False)


def status_json(env, *args):
    proc = run(env, "status", "--format", "json", *args, check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_one_inventory_reaches_every_cluster_of_the_fleet(fleet):
    instances, _, env = fleet
    locks = json.loads(run(env, "lock.show", "--format", "json").stdout)
    names = {f"{kind}{n}" for n in instances for kind in ("db", "lb")}
    assert set(locks) == names
    for name, stores in locks.items():
        # every cluster's CIB and both hosts answered, each in its own instance
        assert [s["state"] for s in stores] == ["free", "free", "free"], (name, stores)
        assert stores[0]["node"].endswith(f"-{name[2:]}")
    pools = json.loads(run(env, "pgpool.status", "--cluster", "all", "--format", "json").stdout)
    assert [p["cluster"] for p in pools["clusters"]] == [f"db{n}" for n in instances]
    for n, pool in zip(instances, pools["clusters"]):
        # read through that instance's own hosts
        assert pool["reachable"] and pool["via"].endswith(f"-{n}")


def test_status_shows_every_cluster_names_a_fault_with_its_cluster_and_cluster_chooses(fleet):
    instances, started, env = fleet
    order = [f"{kind}{n}" for n in instances for kind in ("db", "lb")]
    code, data = status_json(env)
    assert code == 0, data["problems"]
    assert [line["cluster"] for line in data["summary"]] == order
    assert all(line["healthy"] for line in data["summary"])
    table = run(env, "status").stdout
    summary = table.split("\n\n")[0]
    assert summary.splitlines()[0] == f"== {len(order)} cluster(s), {len(order)} healthy"
    for name in order:
        assert f"== cluster {name} " in table  # the details follow the summary

    last = instances[-1]
    run(lab_env(last), "lab.fault", "--host", "lb02", "--kind", "network")
    try:
        code, data = status_json(env)
        assert code != 0
        by = {line["cluster"]: line for line in data["summary"]}
        assert [n for n, line in by.items() if not line["healthy"]] == [f"lb{last}"]
        assert any(f"lb02-{last}" in p for p in by[f"lb{last}"]["problems"])
        assert data["problems"] and all(p.startswith(f"lb{last}: ") for p in data["problems"])
        table = run(env, "status", check=False).stdout
        assert any(line.split()[:3] == [f"lb{last}", "lb", "UNHEALTHY"]
                   for line in table.splitlines())
        # --cluster chooses: another cluster alone is healthy, the faulty one alone is not
        code, one = status_json(env, "--cluster", f"db{last}")
        assert code == 0 and [line["cluster"] for line in one["summary"]] == [f"db{last}"]
        assert list(one["clusters"]) == [f"db{last}"]
    finally:
        if last not in started:  # an instance that outlives the test is left as it was found
            run(lab_env(last), "lab.heal", "--host", "lb02")
