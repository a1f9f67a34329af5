"""The lab: four real hosts (db01 db02 lb01 lb02) in namespaces on this machine.

Instance N is chosen with HATASKS_LAB=N (default 0): namespaces hl{N}-HOST, bridge hlbr{N},
subnet 10.231.N.0/24, state in lab/.state/N (ssh_config, hosts.ini, pgpass). Needs root.
"""

import json

from invoke import Exit

from hatasks.base import task
from hatasks.errors import UsageError

from .chaos import Chaos
from .chaos_plan import STEP_KINDS
from .core import FAULT_KINDS, HOSTS, Lab


def is_dry(c):
    """`inv --dry`: the lab tasks say what they would do and change nothing."""
    return bool(c.config.run.dry)


@task(help={"force": "also replace a LIVE lab of this instance made by another checkout",
            "fencing": "on: a BMC per host (IPMI over LAN) and fence_ipmilan in both clusters; "
                       "off (default): the runbook's unfenced clusters"})
def up(c, force=False, fencing="off"):
    """Start the lab (idempotent): both clusters formed, VIPs answering, GYOM_DB on both DBs."""
    if fencing not in ("on", "off"):
        raise UsageError(f"--fencing must be on or off, not {fencing!r}")
    lab = Lab(dry=is_dry(c))
    with lab.locked():
        lab.up(force=force, fencing=fencing == "on")


@task(help={"force": "also tear down a LIVE lab of this instance made by another checkout"})
def down(c, force=False):
    """Stop the lab: kill each host's PID 1, remove namespaces, links, bridge (stale too)."""
    lab = Lab(dry=is_dry(c))
    with lab.locked():
        lab.down(force=force)


@task(help={"format": "table (default) or json"})
def status(c, format="table"):
    """Show the lab: hosts (power, link, faults), both clusters, pgpool backends."""
    info = Lab().status()
    if format == "json":
        print(json.dumps(info, indent=2))
        return
    print(
        f"lab {info['instance']}: {info['state']}  subnet {info['subnet']}  "
        f"owner {info['owner'] or '-'}"
    )
    for h, v in info["hosts"].items():
        faults = ",".join(v["faults"]) or "-"
        print(f"  {h:5} {v['ip']:14} power={v['power']:3} link={v['link']:6} faults={faults}")
    for name, cl in info["clusters"].items():
        if "error" in cl:
            print(f"  {name} cluster: {cl['error']}")
            continue
        nodes = " ".join(f"{n}={s}" for n, s in cl["nodes"].items())
        res = " ".join(f"{r}@{','.join(w) or 'stopped'}" for r, w in cl["resources"].items())
        print(f"  {name} cluster (seen from {cl['seen_from']}): {nodes} | {res}")
        for f in cl["failures"]:
            print(f"    failed action: {f[0]} on {f[1]} rc={f[2]}")
    if info["pgpool"] is not None:
        pool = info["pgpool"]
        if isinstance(pool, str):
            print(f"  pgpool: {pool}")
        else:
            print("  pgpool: " + " ".join(f"node{i}({h})={s}" for i, h, s in pool))


@task(help={"host": "|".join(HOSTS), "kind": "|".join(FAULT_KINDS)})
def fault(c, host, kind):
    """Inject a runbook failure into one lab host (power|network|heartbeat|pgpool|...)."""
    lab = Lab(dry=is_dry(c))
    with lab.locked():
        lab.fault(host, kind)


@task(help={"host": "|".join(HOSTS)})
def heal(c, host):
    """Undo an injected fault (power on, link up, config restored); no cluster repair."""
    lab = Lab(dry=is_dry(c))
    with lab.locked():
        lab.heal(host)


@task(help={"host": "|".join(HOSTS)})
def reboot(c, host):
    """Reboot one lab host in order (stack stop, PostgreSQL stop, boot); wait for it."""
    lab = Lab(dry=is_dry(c))
    with lab.locked():
        lab.reboot(host)


@task(name="fleet-inventory",
      help={"instances": "lab instances making the site, e.g. 6,7 (each up on its own first)"})
def fleet_inventory(c, instances):
    """Write one inventory (and ssh_config) covering several lab instances; print its path."""
    from .base import LAB_DIR
    from .configs import fleet_texts

    try:
        ns = [int(x) for x in str(instances).split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--instances {instances!r}: numbers separated by commas") from None
    hosts, ssh = fleet_texts(ns)
    folder = LAB_DIR / ".state" / ("fleet-" + "-".join(map(str, ns)))
    if is_dry(c):
        print(f"[dry] would write {folder}/hosts.ini and {folder}/ssh_config")
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ssh_config").write_text(ssh)
    (folder / "hosts.ini").write_text(hosts)
    print(folder / "hosts.ini")


@task(help={"steps": "steps to draw (default 10)", "seed": "the seed (same seed = same run)",
            "duration": "stop drawing after this many seconds (default: no limit)",
            "kinds": "step kinds, comma-separated (default all: "
                     "fault,reboot,double,during,interrupt,operator)"})
def chaos(c, steps=10, seed=1, duration=0, kinds=""):
    """Chaos rehearsal: random faults, interrupts, operator actions; invariants after each step."""
    chosen = tuple(k for k in kinds.split(",") if k) or STEP_KINDS
    bad = [k for k in chosen if k not in STEP_KINDS]
    if bad:
        raise UsageError(f"unknown step kinds {bad} (known: {','.join(STEP_KINDS)})")
    lab = Lab(dry=is_dry(c))
    run = Chaos(lab, int(seed), int(steps), chosen, duration=int(duration) or None)
    if is_dry(c):
        run.dry_run()
        return
    with lab.locked():
        _, failed = run.run()
    if failed:
        raise Exit(code=1)
