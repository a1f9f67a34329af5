"""Load balancer scenarios: manual failover/failback, failure diagnosis and recovery (5.1).

The LB cluster fails back by itself (its group prefers one node more than it sticks where it
runs): `lb.failover` puts the node running the group in standby and verifies the move and
the page served through the VIP; `lb.failback` brings the node online and verifies the
group came back on its own. `lb.diagnose` names the failure pattern of 5.1.2 (power,
network, heartbeat, httpd, or healthy) with evidence and plan; `lb.recover` runs the plan.
The decision logic is the pure function `rules.diagnose_lb(facts)`.
"""

import time

from hatasks import checks, crm, crmmon, engine, hb, journal, notify, output, remote, states, web
from hatasks.base import helps, task
from hatasks.errors import HaError, StateError, UnreachableError


# =========================================================================== facts (I/O)


def fetch_page(ctx, c, hosts):
    """The page served through the VIP, fetched from the first LB host that answers ssh."""
    url = f"http://{c.vars.get('vip')}/"
    names = c.host_names
    for name in hosts:
        try:
            res = remote.run(ctx, name, web.fetch_command(url), probe=True, warn=True,
                             timeout=web.HTTP_TIMEOUT + 10)
        except HaError:
            continue
        code, body = web.parse_fetch(res.stdout or "")
        return {"url": url, "http_code": code, "serving": code == 200,
                "page_node": web.page_node(body, names), "fetched_from": name}
    return {"url": url, "http_code": 0, "serving": False, "page_node": None, "fetched_from": None}


def _probe_lb_host(ctx, c, name):
    host = remote.inventory(ctx).host(name)
    out = {"ssh": False, "ssh_error": None, "power": None, "crm": None, "crm_error": None}
    try:
        out["crm"], out["crm_error"] = engine.probe_crm(ctx, host, c.vars.get("group"))
        out["ssh"] = True
    except UnreachableError as exc:
        out["ssh_error"] = exc.message
        out["power"] = engine.power_state(ctx, host)
    return out


def collect_lb(ctx, c):
    order = c.host_names
    results = remote.probe_many(ctx, order, lambda n: _probe_lb_host(ctx, c, n))
    hosts = {}
    for n in order:
        r = results[n]
        if isinstance(r, HaError):
            r = {"ssh": False, "ssh_error": r.message, "power": None, "crm": None,
                 "crm_error": None}
        hosts[n] = r
    answering = [n for n in order if hosts[n]["ssh"]]
    with_crm = [n for n in order if hosts[n].get("crm")]
    extra = remote.probe_many(ctx, ["web", "policy", "constraints"], lambda k: (
        fetch_page(ctx, c, answering) if k == "web" else
        (engine.read_policy(ctx, c, with_crm[0]) if with_crm else {}) if k == "policy" else
        (crm.read_constraints(ctx, remote.host(ctx, with_crm[0])) if with_crm else None)))
    web_ = extra["web"] if not isinstance(extra["web"], HaError) else {"serving": False}
    policy = extra["policy"] if not isinstance(extra["policy"], HaError) else {}
    cons = extra["constraints"] if not isinstance(extra["constraints"], HaError) else None
    held = journal.lock_held(ctx, c.name)
    return {"cluster": c.name, "kind": c.kind, "order": order, "group": c.vars.get("group"),
            "apache_resource": c.vars.get("apache_resource"), "hosts": hosts, "web": web_,
            "policy": policy, "constraints": cons,
            "lock": None if held is None or held.get("self") else {
                k: held.get(k) for k in ("user", "pid", "host", "action", "since")}}


def diagnose(ctx, cluster=None):
    """Collect and decide: the diagnosis dict (+ "cluster", "facts")."""
    c = checks.cluster(ctx, cluster or None, "lb")
    facts = collect_lb(ctx, c)
    result = states.diagnose_lb(facts)
    return dict(result, cluster=c.name, facts=facts)


@task(name="diagnose",
      help=helps("LB", {"format": True, "cluster": "the LB cluster, or all (default: the only one)",
            "facts": "include the collected facts in the JSON"}))
def diagnose_task(ctx, format=None, cluster=None, facts=False):
    """Name the LB failure pattern with its evidence and recovery plan (5.1.2, table 5-2).

    Reads crm_mon on every node that answers, ssh reachability, the inventory's power_check
    for hosts that do not answer, the page served through the VIP and the failback policy.
    Patterns: power, network, heartbeat, httpd, or healthy. Exit 3 when a failure is named.
    """
    fmt = output.resolve_format(ctx, format)
    if cluster == checks.ALL_CLUSTERS:
        return checks.each_cluster(ctx, "lb", fmt, lambda name: diagnose_task.body(
            ctx, fmt, name, facts))
    return engine.show_diagnosis(diagnose(ctx, cluster), fmt, facts, "lb.recover")


# =========================================================================== failover / failback


def wait_serving(ctx, c, expect_node, timeout):
    """Wait until the VIP serves a page naming EXPECT_NODE (when the page names a node)."""
    deadline = time.monotonic() + timeout
    while True:
        page = fetch_page(ctx, c, c.host_names)
        if page["serving"] and (expect_node is None or page["page_node"] in (expect_node, None)):
            return page
        if time.monotonic() > deadline:
            raise HaError(f"the LB VIP does not serve {expect_node}'s page after {timeout:g}s "
                          f"(HTTP {page['http_code']}, page of {page['page_node']})",
                          HaError.NOT_CONVERGED)
        time.sleep(0.3)


def failover(ctx, from_=None, cluster=None, timeout=60, yes=False):
    c, timeout, group = engine.move_inputs(ctx, "lb", cluster, from_, "from", timeout)
    steps = engine.Steps(2)
    engine.warm_connections(ctx, c)
    before = crm.crm_status(ctx, c.name)
    engine.print_state("before", before)
    src = crmmon.group_node(before, group)
    if src is None:
        raise StateError(f"{group} is not started on one node: see inv lb.diagnose")
    if from_ and src != from_:
        raise StateError(f"{group} runs on {src}, not on {from_}: nothing to fail over from "
                         f"{from_}")
    others = engine.online_others(before, src)
    if not others:
        states = ", ".join(f"{n['name']} {n['state']}" for n in before["nodes"] if n["name"] != src)
        raise StateError(f"refusing to fail over from {src}: no other LB node is online ({states})")
    dst = others[0]
    args = {"from": src, "to": dst, "timeout": timeout}
    with journal.operation(ctx, c.name, "lb.failover", args, yes=yes,
                           summary=f"standby {src}; {group} moves to {dst}"):
        steps(f"standby {src}: {group} moves to {dst}")
        after = hb.standby(ctx, src, timeout=timeout, yes=True)
        if remote.is_dry(ctx):
            return None
        if not (after and crmmon.group_node(after, group) == dst):
            after = crm.wait_for(ctx, c.name, lambda s: crmmon.group_node(s, group) == dst,
                                 timeout, f"{group} started on {dst}")
        steps(f"the VIP serves {dst}'s page")
        page = wait_serving(ctx, c, dst, timeout)
    engine.print_before_after(before, after)
    steps.done(f"the VIP serves {page['page_node'] or 'a page'} (HTTP {page['http_code']}). "
               f"{src} stays in standby: reboot or repair it now (runbook 5.1.1 b), then run inv "
               f"lb.failback (the group comes back by itself once {src} is online)")
    return after


def failback(ctx, to=None, cluster=None, timeout=60, yes=False):
    c, timeout, group = engine.move_inputs(ctx, "lb", cluster, to, "to", timeout)
    steps = engine.Steps(3)
    engine.warm_connections(ctx, c)
    before = crm.crm_status(ctx, c.name)
    engine.print_state("before", before)
    states = {n["name"]: n["state"] for n in before["nodes"]}
    offline = [n for n, s in states.items() if s == "offline"]
    if offline:
        raise StateError(f"refusing to fail back: {', '.join(offline)} is OFFLINE (cluster stack "
                         f"down or unreachable): see inv lb.diagnose / lb.recover")
    if to is None:
        standby = [n for n, s in states.items() if s == "standby"]
        to = standby[0] if standby else None
    policy = engine.read_policy(ctx, c, before["read_on"])
    pref = policy.get("preferred")
    expect = pref if policy.get("automatic") else to
    if to is None:
        if crmmon.group_node(before, group) == pref or pref is None:
            print(f"no LB node is in standby and {group} runs on "
                  f"{crmmon.group_node(before, group)}: nothing to fail back")
            return before
        to = pref
    if not policy.get("automatic"):
        print(f"warning: the CIB does not make {group} fail back by itself "
              f"(preferred {pref}, score {policy.get('score')}, stickiness "
              f"{policy.get('stickiness')})")
    args = {"to": to, "timeout": timeout}
    with journal.operation(ctx, c.name, "lb.failback", args, yes=yes,
                           summary=f"{to} online; {group} comes back to {expect} by itself"):
        steps(f"{to} online" if states.get(to) == "standby" else f"{to} is online already")
        if states.get(to) == "standby":
            hb.online(ctx, to, timeout=timeout, yes=True)
        if remote.is_dry(ctx):
            return None
        steps(f"{group} comes back to {expect} by itself")
        after = crm.wait_for(ctx, c.name,
                            lambda s: (all(n["state"] == "online" for n in s["nodes"])
                                       and (expect is None or crmmon.group_node(s, group) == expect)
                                       and crmmon.group_node(s, group) is not None),
                            timeout, f"both LB nodes online and {group} back on {expect} "
                                     f"(automatic failback)")
        steps(f"the VIP serves {expect}'s page" if expect else "the VIP serves a page")
        page = wait_serving(ctx, c, expect, timeout)
    engine.print_before_after(before, after)
    steps.done(f"{group} came back to {crmmon.group_node(after, group)} by itself; the VIP "
               f"serves {page['page_node'] or 'a page'}")
    return after


@task(name="failover",
      help=helps("LB", {"from": "node the group must be running on (default: where it runs)",
            "cluster": True, "timeout": True,
            "yes": True}))
@notify.mails("lb.failover")
def failover_task(ctx, from_=None, cluster=None, timeout=60, yes=False):
    """Move the LB group off a node by hand, verified (5.1.1 a): the node stays in standby.

    crm_standby on the node running the group; verify the group is Started on the other node
    and the VIP serves its page. Reboot/repair the node, then `inv lb.failback`.
    """
    failover(ctx, from_, cluster, timeout, yes)


@task(name="failback",
      help=helps("LB", {"to": "node to bring back online (default: the node in standby)",
            "cluster": True, "timeout": True,
            "yes": True}))
@notify.mails("lb.failback")
def failback_task(ctx, to=None, cluster=None, timeout=60, yes=False):
    """Bring the standby LB node online and verify the group comes back by itself (5.1.1 recovery).

    Refused while a node is OFFLINE. The LB cluster fails back automatically (its location
    preference beats the stickiness): this task only verifies that it did.
    """
    failback(ctx, to, cluster, timeout, yes)


# =========================================================================== recovery


def _check_apache(run, args):
    data = web.check(run.ctx, args["host"])
    if not data["ok"]:
        where = (f"{data.get('file')} line {data.get('line')}" if data.get("line") is not None
                 else data.get("file") or data.get("conf"))
        raise engine.NeedsHuman(f"Apache does not start on {args['host']}: {where}: "
                                f"{data.get('message')}; fix it, then run lb.recover again")
    print(f"{args['host']}: apachectl -t: Syntax OK: the configuration is fixed")


def _failback(run, args):
    failback(run.ctx, args.get("to"), run.cluster.name, run.timeout, yes=True)


def _wait_started(run, args):
    group = run.cluster.vars.get("group")
    node = args.get("node")
    # a failback awaited on a node that fencing (or a power cut) takes away cannot come: the
    # wait ends once the node stops answering (chaos seed 31 step 19), and the next recover
    # names its power
    gone = (crm.host_gone(run.ctx, remote.host(run.ctx, node), awaited=f"{group} on it")
            if node and node in run.cluster.host_names else None)
    crm.wait_for(run.ctx, run.cluster.name, lambda s: crmmon.group_node(s, group) == node if node else
                crmmon.group_node(s, group) is not None, run.timeout,
                f"{group} started on {node or 'one node'}", give_up=gone)
    wait_serving(run.ctx, run.cluster, node, run.timeout)


#: the plan steps of rules.diagnose_lb and the functions that run them
def _clear(run, args):
    hb.clear(run.ctx, args["resource"], run.cluster.name, run.timeout, yes=True)


STEPS = {
    "hb.start": engine.start_stack,
    "hb.cleanup": engine.cleanup,
    "hb.clear": _clear,
    "web.check": _check_apache,
    "lb.failback": _failback,
    "wait": _wait_started,
}


def recover(ctx, cluster=None, timeout=60, yes=False):
    c = checks.cluster(ctx, cluster or None, "lb")
    timeout = checks.positive("timeout", timeout)
    run = engine.Run(ctx, c, timeout)
    return engine.run_recovery(ctx, c, "lb.recover", lambda: diagnose(ctx, c.name),
                               lambda plan_step: engine.execute(run, plan_step, STEPS), {}, yes)


@task(name="recover",
      help=helps("LB", {"cluster": True, "timeout": True,
            "yes": True}))
@notify.mails("lb.recover")
def recover_task(ctx, cluster=None, timeout=60, yes=False):
    """Recover the LB cluster from the diagnosed failure, step by step (5.1.2, table 5-2).

    Start the cluster stack and wait for online; show Apache's configuration error and stop
    until it is fixed, then clean up the failed action; verify the automatic failback.
    A step that needs a human (power, network, a configuration edit) is named and the task
    exits 3 until it is done.
    """
    recover(ctx, cluster, timeout, yes)
