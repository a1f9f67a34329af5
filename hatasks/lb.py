"""Load balancer scenarios: manual failover/failback, failure diagnosis and recovery (5.1).

The LB cluster fails back by itself (its group prefers one node more than it sticks where it
runs): `lb.failover` puts the node running the group in standby and verifies the move and
the page served through the VIP; `lb.failback` brings the node online and verifies the
group came back on its own. `lb.diagnose` names the failure pattern of 5.1.2 (power,
network, heartbeat, httpd, or healthy) with evidence and plan; `lb.recover` runs the plan.
The decision logic is the pure function `diagnose_lb(facts)`.
"""

import xml.etree.ElementTree as ET

from hatasks import cluster as crm
from hatasks import db, hb, journal, output, remote, web
from hatasks.base import task
from hatasks.errors import HaError, StateError, UnreachableError

LB_PATTERNS = ("power", "network", "heartbeat", "httpd")


# =========================================================================== pure logic


def parse_policy(constraints_xml, defaults_xml, group):
    """Pure: CIB constraints + rsc_defaults -> {"preferred", "score", "stickiness", "automatic"}.

    automatic: the group returns to its preferred node by itself (location score above the
    resource stickiness), as the runbook's LB cluster does; the DB cluster must not."""
    preferred, score = None, None
    try:
        root = ET.fromstring(constraints_xml) if constraints_xml.strip() else None
    except ET.ParseError:
        root = None
    if root is not None:
        for loc in root.iter("rsc_location"):
            if loc.get("rsc") != group or not loc.get("node"):
                continue
            raw = loc.get("score", "0")
            value = 1000000 if raw.upper() in ("INFINITY", "+INFINITY") else \
                (-1000000 if raw.upper() == "-INFINITY" else int(raw))
            if value > 0 and (score is None or value > score):
                preferred, score = loc.get("node"), value
    stickiness = 0
    try:
        root = ET.fromstring(defaults_xml) if defaults_xml.strip() else None
    except ET.ParseError:
        root = None
    if root is not None:
        for nv in root.iter("nvpair"):
            if nv.get("name") == "resource-stickiness":
                raw = nv.get("value", "0")
                stickiness = 1000000 if raw.upper() in ("INFINITY", "+INFINITY") else int(raw)
    return {"preferred": preferred, "score": score, "stickiness": stickiness,
            "automatic": preferred is not None and score > stickiness}


def diagnose_lb(facts):
    """Pure: facts of an LB cluster -> {"pattern", "host", "evidence", "plan", "steps", ...}."""
    order = facts["order"]
    group = facts.get("group")
    rid = facts.get("apache_resource")
    problems = list(db._unreachable_problems(facts, order))
    views = db._views(facts)
    gnode = db._group_node(facts)
    for f in db._all_failed(facts):
        what = ("httpd start failure" if f.get("operation") == "start" else
                f"{f.get('resource')} {f.get('operation')} failure")
        problems.append(("httpd", f.get("node"), [
            f"Failed actions: {f.get('resource')} {f.get('operation')} on {f.get('node')} "
            f"rc={f.get('rc')} {f.get('reason') or ''}: {what}".rstrip()]))
    for name, v in views.items():
        for node, st in v["nodes"].items():
            if st == "standby" and not any(p[1] == node for p in problems):
                problems.append(("heartbeat", node, [f"{name} sees {node} in standby (after "
                                                     f"lb.failover? lb.failback brings it back)"]))
    web_ = facts.get("web") or {}
    if views and gnode and not web_.get("serving") and not problems:
        problems.append(("httpd", gnode, [f"{group} runs on {gnode} but the VIP serves no page "
                                          f"(HTTP {web_.get('http_code') or 'no answer'})"]))
    policy = facts.get("policy") or {}
    pref = policy.get("preferred")
    if not problems:
        evidence = [f"{', '.join(f'{n} online' for n in order)}; {group} started on {gnode}",
                    f"the VIP serves HTTP {web_.get('http_code')} from "
                    f"{web_.get('page_node') or '?'}"]
        steps = []
        if pref and policy.get("automatic") and gnode != pref:
            steps.append(db._step("wait", f"the group should come back to {pref} by itself"))
            steps[-1]["text"] = f"{group} back on {pref} (automatic failback)"
            steps[-1]["args"] = {"node": pref}
            return db._result("healthy", None, evidence, steps, None, [])
        return db._result("healthy", None, evidence, steps, None, [])
    rank = {p: i for i, p in enumerate(LB_PATTERNS)}
    problems.sort(key=lambda p: rank[p[0]])
    pattern, host = problems[0][0], problems[0][1]
    evidence = []
    for p in problems:
        for line in p[2]:
            if line not in evidence:
                evidence.append(line)
    if pref:
        evidence.append(f"failback: {group} prefers {pref} (score {policy.get('score')}, "
                        f"stickiness {policy.get('stickiness')}): "
                        + ("it comes back by itself" if policy.get("automatic")
                           else "NO automatic failback configured"))
    steps = []
    f = facts["hosts"].get(host) or {}
    if pattern == "power":
        steps.append(db._manual(f"power on {host} and confirm its OS boots (runbook 5.1.2 a); "
                                f"then run lb.recover again"))
        steps.append(db._step("hb.start", f"start the cluster stack on {host} if it did not "
                                          f"start at boot", conditional=True, host=host))
    elif pattern == "network":
        if not f.get("ssh"):
            steps.append(db._manual(f"restore {host}'s network: cables, switch ports, firewall; "
                                    f"both LB nodes must ping each other (runbook 5.1.2 b); then "
                                    f"run lb.recover again"))
        else:
            steps.append(db._manual("restore the cluster interconnect between the LB nodes; "
                                    "then run lb.recover again"))
            steps[-1]["settle"] = db.SETTLE
        steps.append(db._step("hb.start", f"start the cluster stack on {host} if it stopped",
                              conditional=True, host=host))
    elif pattern == "heartbeat":
        st = [v["nodes"].get(host) for v in views.values()]
        if "standby" in st and f.get("crm"):
            steps.append(db._step("lb.failback", f"{host} is in standby: bring it online",
                                  to=host))
        else:
            steps.append(db._step("hb.start", f"start the cluster stack on {host} and wait for "
                                              f"online (else read hb.log --host {host})",
                                  host=host))
    elif pattern == "httpd":
        failed = [x for x in db._all_failed(facts) if x.get("node") == host]
        if failed and f.get("ssh"):
            steps.append(db._step("web.check", f"apachectl -t on {host} shows the configuration "
                                               f"error", host=host))
            steps.append(db._manual(f"fix the error web.check shows in {host}'s Apache "
                                    f"configuration, then run lb.recover again", conditional=True))
        if not failed:
            # no Failed action (yet): Pacemaker's monitor has not noticed; it restarts Apache
            steps.append(db._step("wait", "wait for Pacemaker to notice and the VIP to serve "
                                          "(else a Failed action shows what to fix)", node=None))
            steps[-1]["text"] = f"{group} started and the VIP serving"
        for x in failed:
            steps.append(db._step("hb.cleanup", f"clear the failed {x.get('operation')} of "
                                                f"{x.get('resource')} on {host}",
                                  resource=x.get("resource") or rid, node=host))
    if pref and policy.get("automatic"):
        steps.append(db._step("wait", f"verify {group} came back to {pref} by itself",
                              conditional=True, node=pref))
        steps[-1]["text"] = f"{group} back on {pref} (automatic failback)"
    return db._result(pattern, host, evidence, steps, None, [p[:2] for p in problems])


# =========================================================================== facts (I/O)


def read_policy(ctx, c, host):
    res_c = remote.run(ctx, host, "cibadmin --query --scope constraints", probe=True, warn=True)
    res_d = remote.run(ctx, host, "cibadmin --query --scope rsc_defaults", probe=True, warn=True)
    return parse_policy(res_c.stdout if res_c.exited == 0 else "",
                        res_d.stdout if res_d.exited == 0 else "", c.vars.get("group"))


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
        out["crm"], out["crm_error"] = db.probe_crm(ctx, host, c.vars.get("group"))
        out["ssh"] = True
    except UnreachableError as exc:
        out["ssh_error"] = exc.message
        out["power"] = db.power_state(ctx, host)
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
    extra = remote.probe_many(ctx, ["web", "policy"], lambda k: (
        fetch_page(ctx, c, answering) if k == "web" else
        (read_policy(ctx, c, with_crm[0]) if with_crm else {})))
    web_ = extra["web"] if not isinstance(extra["web"], HaError) else {"serving": False}
    policy = extra["policy"] if not isinstance(extra["policy"], HaError) else {}
    return {"cluster": c.name, "kind": c.kind, "order": order, "group": c.vars.get("group"),
            "apache_resource": c.vars.get("apache_resource"), "hosts": hosts, "web": web_,
            "policy": policy}


def diagnose_step(ctx, cluster=None):
    c = db.kind_cluster(ctx, "lb", cluster)
    facts = collect_lb(ctx, c)
    result = diagnose_lb(facts)
    return dict(result, cluster=c.name, facts=facts)


@task(help={"format": "table or json", "cluster": "the LB cluster (default: the only one)",
            "facts": "include the collected facts in the JSON"})
def diagnose(ctx, format=None, cluster=None, facts=False):
    """Name the LB failure pattern with its evidence and recovery plan (5.1.2, table 5-2).

    Reads crm_mon on every node that answers, ssh reachability, the inventory's power_check
    for hosts that do not answer, the page served through the VIP and the failback policy.
    Patterns: power, network, heartbeat, httpd, or healthy. Exit 3 when a failure is named.
    """
    fmt = output.resolve_format(ctx, format)
    d = diagnose_step(ctx, cluster)
    shown = db._public(d)
    if not facts:
        shown.pop("facts", None)
    output.emit(shown, fmt, table=db._diagnosis_table)
    if d["pattern"] != "healthy":
        raise StateError(f"{d['cluster']} cluster: {d['pattern']} failure"
                         + (f" of {d['host']}" if d.get("host") else "")
                         + "; recovery: inv lb.recover (plan above)")
    return d


# =========================================================================== failover / failback


def _serving(ctx, c, expect_node, timeout):
    """Wait until the VIP serves a page naming EXPECT_NODE (when the page names a node)."""
    import time

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


def failover_step(ctx, from_=None, cluster=None, timeout=60, yes=False):
    c = db.kind_cluster(ctx, "lb", cluster)
    if from_ is not None:
        db.cluster_host(ctx, c, from_, "from")
    timeout = db._positive("timeout", timeout)
    group = c.vars.get("group")
    before = hb.crm_status(ctx, c.name)
    db._print_state("before", before)
    src = crm.group_node(before, group)
    if src is None:
        raise StateError(f"{group} is not started on one node: see inv lb.diagnose")
    if from_ and src != from_:
        raise StateError(f"{group} runs on {src}, not on {from_}: nothing to fail over from "
                         f"{from_}")
    others = db._online_others(before, src)
    if not others:
        states = ", ".join(f"{n['name']} {n['state']}" for n in before["nodes"] if n["name"] != src)
        raise StateError(f"refusing to fail over from {src}: no other LB node is online ({states})")
    dst = others[0]
    args = {"from": src, "to": dst, "timeout": timeout}
    with journal.operation(ctx, c.name, "lb.failover", args, yes=yes,
                           summary=f"standby {src}; {group} moves to {dst}"):
        hb.standby_step(ctx, src, timeout=timeout, yes=True)
        if db._dry(ctx):
            return None
        after = hb.wait_for(ctx, c.name, lambda s: crm.group_node(s, group) == dst, timeout,
                            f"{group} started on {dst}")
        page = _serving(ctx, c, dst, timeout)
    db._print_state("after", after)
    print(f"the VIP serves {page['page_node'] or 'a page'} (HTTP {page['http_code']}). {src} stays "
          f"in standby: reboot or repair it now (runbook 5.1.1 b), then run inv lb.failback "
          f"(the group comes back by itself once {src} is online)")
    return after


def failback_step(ctx, to=None, cluster=None, timeout=60, yes=False):
    c = db.kind_cluster(ctx, "lb", cluster)
    if to is not None:
        db.cluster_host(ctx, c, to, "to")
    timeout = db._positive("timeout", timeout)
    group = c.vars.get("group")
    before = hb.crm_status(ctx, c.name)
    db._print_state("before", before)
    states = {n["name"]: n["state"] for n in before["nodes"]}
    offline = [n for n, s in states.items() if s == "offline"]
    if offline:
        raise StateError(f"refusing to fail back: {', '.join(offline)} is OFFLINE (cluster stack "
                         f"down or unreachable): see inv lb.diagnose / lb.recover")
    if to is None:
        standby = [n for n, s in states.items() if s == "standby"]
        to = standby[0] if standby else None
    policy = read_policy(ctx, c, before["read_on"])
    pref = policy.get("preferred")
    expect = pref if policy.get("automatic") else to
    if to is None:
        if crm.group_node(before, group) == pref or pref is None:
            print(f"no LB node is in standby and {group} runs on "
                  f"{crm.group_node(before, group)}: nothing to fail back")
            return before
        to = pref
    if not policy.get("automatic"):
        print(f"warning: the CIB does not make {group} fail back by itself "
              f"(preferred {pref}, score {policy.get('score')}, stickiness "
              f"{policy.get('stickiness')})")
    args = {"to": to, "timeout": timeout}
    with journal.operation(ctx, c.name, "lb.failback", args, yes=yes,
                           summary=f"{to} online; {group} comes back to {expect} by itself"):
        if states.get(to) == "standby":
            hb.online_step(ctx, to, timeout=timeout, yes=True)
        if db._dry(ctx):
            return None
        after = hb.wait_for(ctx, c.name,
                            lambda s: (all(n["state"] == "online" for n in s["nodes"])
                                       and (expect is None or crm.group_node(s, group) == expect)
                                       and crm.group_node(s, group) is not None),
                            timeout, f"both LB nodes online and {group} back on {expect} "
                                     f"(automatic failback)")
        page = _serving(ctx, c, expect, timeout)
    db._print_state("after", after)
    print(f"{group} came back to {crm.group_node(after, group)} by itself; the VIP serves "
          f"{page['page_node'] or 'a page'}")
    return after


@task(name="failover", help={"from": "node the group must be running on (default: where it runs)",
                             "cluster": "LB cluster (default: the only one)",
                             "timeout": "seconds for each verification (default 60)",
                             "yes": "do not ask for confirmation (needed without a terminal)"})
def failover(ctx, from_=None, cluster=None, timeout=60, yes=False):
    """Move the LB group off a node by hand, verified (5.1.1 a): the node stays in standby.

    crm_standby on the node running the group; verify the group is Started on the other node
    and the VIP serves its page. Reboot/repair the node, then `inv lb.failback`.
    """
    from hatasks import notify

    with notify.scenario(ctx, "lb.failover"):
        failover_step(ctx, from_, cluster, timeout, yes)


@task(help={"to": "node to bring back online (default: the node in standby)",
            "cluster": "LB cluster (default: the only one)",
            "timeout": "seconds for each verification (default 60)",
            "yes": "do not ask for confirmation (needed without a terminal)"})
def failback(ctx, to=None, cluster=None, timeout=60, yes=False):
    """Bring the standby LB node online and verify the group comes back by itself (5.1.1 recovery).

    Refused while a node is OFFLINE. The LB cluster fails back automatically (its location
    preference beats the stickiness): this task only verifies that it did.
    """
    from hatasks import notify

    with notify.scenario(ctx, "lb.failback"):
        failback_step(ctx, to, cluster, timeout, yes)


# =========================================================================== recovery


def execute_lb_step(ctx, c, step, timeout):
    t, a = step["task"], step.get("args") or {}
    if t == "hb.start":
        hb.start_step(ctx, a["host"], timeout=max(timeout, 120), yes=True)
    elif t == "hb.cleanup":
        hb.cleanup_step(ctx, a["resource"], a["node"], timeout=timeout, yes=True)
    elif t == "web.check":
        data = web.check_step(ctx, a["host"])
        if not data["ok"]:
            where = (f"{data.get('file')} line {data.get('line')}" if data.get("line") is not None
                     else data.get("file") or data.get("conf"))
            raise db.NeedsHuman(f"Apache does not start on {a['host']}: {where}: "
                                f"{data.get('message')}; fix it, then run lb.recover again")
        print(f"{a['host']}: apachectl -t: Syntax OK: the configuration is fixed")
    elif t == "lb.failback":
        failback_step(ctx, a.get("to"), c.name, timeout, yes=True)
    elif t == "wait":
        group = c.vars.get("group")
        node = a.get("node")
        hb.wait_for(ctx, c.name, lambda s: crm.group_node(s, group) == node if node else
                    crm.group_node(s, group) is not None, timeout,
                    f"{group} started on {node or 'one node'}")
        _serving(ctx, c, node, timeout)
    else:
        raise StateError(f"unknown plan step {t}")


def recover_step(ctx, cluster=None, timeout=60, yes=False):
    c = db.kind_cluster(ctx, "lb", cluster)
    timeout = db._positive("timeout", timeout)

    def diag():
        return diagnose_step(ctx, c.name)

    return db.run_recovery(ctx, c, "lb.recover", diag,
                           lambda step: execute_lb_step(ctx, c, step, timeout), {}, yes)


@task(help={"cluster": "LB cluster (default: the only one)",
            "timeout": "seconds for each verification (default 60)",
            "yes": "do not ask for confirmation (needed without a terminal)"})
def recover(ctx, cluster=None, timeout=60, yes=False):
    """Recover the LB cluster from the diagnosed failure, step by step (5.1.2, table 5-2).

    Start the cluster stack and wait for online; show Apache's configuration error and stop
    until it is fixed, then clean up the failed action; verify the automatic failback.
    A step that needs a human (power, network, a configuration edit) is named and the task
    exits 3 until it is done.
    """
    from hatasks import notify

    with notify.scenario(ctx, "lb.recover"):
        recover_step(ctx, cluster, timeout, yes)
