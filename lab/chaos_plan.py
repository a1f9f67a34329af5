"""The chaos rehearsal's generator: a seeded, pure draw of steps (no I/O).

`draw_plan(seed, steps)` is a pure function of its arguments: the same seed gives the same
steps, so `inv lab.chaos --seed S` replays a run. A step is a dict; hosts that depend on the
cluster's state when the step runs are named by role ("active": where the DB group runs,
"passive": the other DB node), resolved by the runner at that moment.
"""

import random

from .base import DB_HOSTS, FAULT_KINDS, HOSTS, LB_HOSTS

# step kinds, in the order `--kinds` lists them
STEP_KINDS = ("fault", "reboot", "double", "during", "interrupt", "operator")

# every (host, kind) pair lab.fault accepts
FAULTS = tuple(
    (h, k)
    for k in FAULT_KINDS
    for h in HOSTS
    if not (k in ("pgpool", "postgres") and h not in DB_HOSTS)
    and not (k == "httpd" and h not in LB_HOSTS)
)

# hatasks tasks interrupted at a random moment: (name, method) and the delay range (s)
INTERRUPTS = (
    ("db.failover", None, (0.5, 8.0)),
    ("sync.resync", "dump", (1.0, 25.0)),
    ("sync.resync", "basebackup", (1.0, 20.0)),
    ("sync.resync", "online", (1.0, 20.0)),
    ("db.recover", None, (0.5, 20.0)),
    ("pgpool.stop", None, (0.3, 4.0)),
)
SIGNALS = ("INT", "KILL")

# operator actions (what a person types, some of them outside hatasks)
OPERATOR = ("hb.standby", "pgpool.switch", "pgpool.stop", "db.maintenance", "maintenance-mode",
            "crm-move")

# hatasks operations a fault can land in the middle of
DURING_OPS = ("db.failover", "sync.resync", "pgpool.switch", "db.recover")


def _operator(rng):
    action = rng.choice(OPERATOR)
    step = {"kind": "operator", "action": action}
    if action == "hb.standby":
        step["node"] = rng.choice(HOSTS)
    elif action == "pgpool.switch":
        step["node"] = rng.choice(DB_HOSTS)
    elif action == "pgpool.stop":
        step["host"] = "active"
    elif action == "db.maintenance":
        step["host"] = rng.choice(DB_HOSTS)
        step["for"] = rng.choice(("reboot", "pg-restart"))
    elif action == "maintenance-mode":
        step["cluster"] = rng.choice(("db", "lb"))
    elif action == "crm-move":
        step["group"] = rng.choice(("grp-pgpool", "grp-apache"))
    return step


def draw_step(rng, kinds=STEP_KINDS):
    """One step drawn from `rng` among `kinds`."""
    kind = rng.choice(tuple(kinds))
    if kind == "fault":
        host, fk = rng.choice(FAULTS)
        return {"kind": "fault", "faults": [[host, fk]]}
    if kind == "reboot":
        return {"kind": "reboot", "host": rng.choice(HOSTS)}
    if kind == "double":
        a, b = rng.sample(FAULTS, 2)
        while a[0] == b[0]:  # two faults on two different hosts
            a, b = rng.sample(FAULTS, 2)
        return {"kind": "double", "faults": [list(a), list(b)]}
    if kind == "during":
        op = rng.choice(DURING_OPS)
        host, fk = rng.choice(FAULTS)
        step = {"kind": "during", "op": op, "faults": [[host, fk]],
                "delay": round(rng.uniform(0.5, 10.0), 2)}
        if op == "sync.resync":
            step["method"] = rng.choice(("dump", "basebackup", "online"))
        return step
    if kind == "interrupt":
        task, method, (lo, hi) = rng.choice(INTERRUPTS)
        step = {"kind": "interrupt", "task": task, "signal": rng.choice(SIGNALS),
                "delay": round(rng.uniform(lo, hi), 2)}
        if method:
            step["method"] = method
        return step
    return _operator(rng)


def draw_plan(seed, steps, kinds=STEP_KINDS):
    """The plan of a run: `steps` steps, a pure function of (seed, steps, kinds)."""
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in STEP_KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown step kinds {bad} (known: {', '.join(STEP_KINDS)})")
    rng = random.Random(f"hatasks-chaos/{seed}")
    plan = []
    for n in range(1, steps + 1):
        step = draw_step(rng, kinds)
        step["n"] = n
        plan.append(step)
    return plan


def describe(step):
    """One line naming what the step does, as an operator would read it."""
    k = step["kind"]
    faults = " + ".join(f"lab.fault --host {h} --kind {f}" for h, f in step.get("faults", []))
    if k in ("fault", "double"):
        return faults
    if k == "reboot":
        return f"lab.reboot --host {step['host']}"
    if k == "during":
        op = step["op"] + (f" --method {step['method']}" if "method" in step else "")
        return f"{op}, after {step['delay']}s: {faults}"
    if k == "interrupt":
        t = step["task"] + (f" --method {step['method']}" if "method" in step else "")
        return f"{t}, SIG{step['signal']} after {step['delay']}s"
    a = step["action"]
    if a == "hb.standby":
        return f"hb.standby --node {step['node']}"
    if a == "pgpool.switch":
        return f"pgpool.switch --node {step['node']}"
    if a == "pgpool.stop":
        return "pgpool.stop --host <active>"
    if a == "db.maintenance":
        return f"db.maintenance --host {step['host']} --for {step['for']}"
    if a == "maintenance-mode":
        return f"crm_attribute -n maintenance-mode -v true ({step['cluster']} cluster)"
    return f"crm_resource --move -r {step['group']}"


def fault_kinds_drawn(plan):
    """{label: count} of what the plan draws, for the report."""
    out = {}
    for s in plan:
        if s["kind"] in ("fault", "double", "during"):
            labels = [f"fault:{f}" for _, f in s["faults"]]
            if s["kind"] == "during":
                labels.append(f"during:{s['op']}")
        elif s["kind"] == "reboot":
            labels = ["reboot"]
        elif s["kind"] == "interrupt":
            labels = [f"interrupt:{s['task']}{'/' + s['method'] if 'method' in s else ''}"
                      f":SIG{s['signal']}"]
        else:
            labels = [f"operator:{s['action']}"]
        for lab in labels:
            out[lab] = out.get(lab, 0) + 1
    return dict(sorted(out.items()))
