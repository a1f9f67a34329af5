"""Apache on the load balancers: configuration check and where the web VIP is served from.

Runbook 5.1.2 (d): `apachectl` reports `Syntax error on line N of httpd.conf` when httpd cannot
start; fix it, then `hb.cleanup --resource apache --node lbNN`.
"""

import re

from hatasks import checks, crm, crmmon, output, parsers, remote, shell
from hatasks.base import helps, task
from hatasks.output import tabulate
from hatasks.errors import HaError, StateError, UsageError

#: seconds curl waits for the page through the VIP
HTTP_TIMEOUT = 5

_HTTP_MARK = "HATASKS_HTTP_CODE:"


def check_command(conf):
    """apache2ctl (Debian) or apachectl (elsewhere) configuration test of CONF."""
    q = shell.q(conf)
    return (f"if command -v apache2ctl >/dev/null 2>&1; then apache2ctl -t -f {q}; "
            f"else apachectl -t -f {q}; fi 2>&1")


def parse_check(text, rc):
    """{"ok", "file", "line", "message", "output"} from `apachectl -t` output and exit code."""
    parsed = dict(parsers.parse_apachectl(text))
    parsed.setdefault("ok", rc == 0)
    parsed["ok"] = bool(parsed["ok"]) and rc == 0
    parsed.setdefault("output", text)
    return parsed


def check(ctx, host_name):
    """Run the Apache configuration test on HOST (read-only)."""
    host = checks.host(ctx, host_name)
    cluster = host.cluster
    conf = (host.vars or {}).get("apache_conf")
    if not conf:
        raise UsageError(f"--host {host.name}: no apache_conf in the inventory for it "
                         f"(is it a load balancer? cluster {cluster})")
    res = remote.run(ctx, host, check_command(conf), probe=True, warn=True)
    data = parse_check(res.stdout or "", res.exited)
    data.update(host=host.name, conf=conf, rc=res.exited)
    return data


@task(name="check", help=helps("LB", {"host": "load balancer host (lb01, lb02)", "format": True}))
def check_task(ctx, host, format=None):
    """Test a load balancer's Apache configuration; exit 3 naming the file and line of an error.

    Runbook 5.1.2.2 (d): `apachectl` reports `Syntax error on line N of httpd.conf` when httpd
    cannot start (here `apache2ctl -t -f <inventory apache_conf>`, read-only).
    """
    fmt = output.resolve_format(ctx, format)
    data = check(ctx, host)
    if fmt == "json":
        output.emit(data, "json")
    elif data["ok"]:
        print(f"{data['host']}: {data['conf']}: Syntax OK", flush=True)
    if not data["ok"]:
        where = (f"{data['file']} line {data['line']}" if data.get("line") is not None
                 else data.get("file") or data["conf"])
        raise StateError(f"{data['host']}: Apache configuration error in {where}: "
                         f"{data.get('message')}")
    return data


# --------------------------------------------------------------------------- status


def fetch_command(url, timeout=HTTP_TIMEOUT):
    """Body of URL then a last line `HATASKS_HTTP_CODE:NNN` (curl, else python3)."""
    q = shell.q(url)
    py = ("import sys,urllib.request as u\n"
          "try:\n"
          f" r=u.urlopen(sys.argv[1],timeout={int(timeout)}); b=r.read(); c=r.status\n"
          "except u.HTTPError as e:\n b=e.read(); c=e.code\n"
          "except Exception:\n b=b''; c=0\n"
          f"sys.stdout.write(b.decode('utf-8','replace')+'\\n{_HTTP_MARK}%d\\n'%c)")
    return (f"if command -v curl >/dev/null 2>&1; then curl -s -m {int(timeout)} "
            f"-w {shell.q(chr(10) + _HTTP_MARK + '%{http_code}' + chr(10))} {q}; "
            f"else python3 -c {shell.q(py)} {q}; fi")


def parse_fetch(text):
    """(http code as int, 0 when nothing answered; body)."""
    code, body = 0, text
    idx = text.rfind(_HTTP_MARK)
    if idx >= 0:
        body = text[:idx]
        digits = text[idx + len(_HTTP_MARK):].strip()[:3]
        code = int(digits) if digits.isdigit() else 0
    return code, body.rstrip("\n")


def page_node(body, names):
    """The inventory host named in the page (first one found), else None."""
    text = re.sub(r"<[^>]+>", " ", body or "")
    found = [(m.start(), n) for n in names for m in [re.search(rf"\b{re.escape(n)}\b", text)] if m]
    return min(found)[1] if found else None


def status(ctx, cluster=None):
    """Which LB node holds the VIP / runs the apache group, and the page served through the VIP."""
    inv = remote.inventory(ctx)
    lb = checks.cluster(ctx, cluster or None, "lb", exact=True, first=True,
                        wrong_kind="cluster {name} is not a load balancer cluster (kind {kind})",
                        missing="no load balancer cluster (cluster_kind=lb) in {path}",
                        vip="cluster {name}: no vip in the inventory")
    vip = lb.vars["vip"]
    state = crm.crm_status(ctx, lb.name)
    group = lb.vars.get("group")
    vip_res = lb.vars.get("vip_resource")
    apache_res = lb.vars.get("apache_resource")
    by_id = {r["id"]: r for r in state.get("resources", [])}

    def where(res_id):
        r = by_id.get(res_id) if res_id else None
        if r is None:
            return None
        return r.get("node") if r.get("role") in crmmon.ACTIVE_ROLES else None

    url = f"http://{vip}/"
    fetched_from, code, body, problem = None, 0, "", None
    order = [state["read_on"]] + [h.name for h in lb.hosts if h.name != state["read_on"]]
    for name in order:
        try:
            res = remote.run(ctx, inv.host(name), fetch_command(url), probe=True, warn=True,
                             timeout=HTTP_TIMEOUT + 10)
        except HaError as exc:
            problem = exc.message
            continue
        fetched_from = name
        code, body = parse_fetch(res.stdout or "")
        break
    names = [h.name for h in lb.hosts]
    data = {
        "cluster": lb.name,
        "vip": vip,
        "vip_node": where(vip_res),
        "group": group,
        "group_node": crmmon.group_node(state, group) if group else None,
        "apache_node": where(apache_res),
        "nodes": state.get("nodes", []),
        "failed_actions": state.get("failed_actions", []),
        "url": url,
        "fetched_from": fetched_from,
        "http_code": code,
        "page_node": page_node(body, names),
        "page": body[:500],
        "serving": code == 200,
        "read_on": state["read_on"],
    }
    if fetched_from is None:
        data["fetch_error"] = problem
    return data


@task(name="status",
      help=helps("LB", {"cluster": "load balancer cluster (default: the inventory's lb cluster)",
            "format": True}))
def status_task(ctx, cluster=None, format=None):
    """Show which LB node holds the VIP and runs Apache, and the page the VIP serves.

    Runbook 5.1: crm_mon (group Started on which LB) plus the page fetched through the VIP from an
    LB node. Exit 3 when the VIP serves no page.
    """
    fmt = output.resolve_format(ctx, format)
    data = status(ctx, cluster)
    if fmt == "json":
        output.emit(data, "json")
    else:
        nodes = ", ".join(f"{n['name']} {n['state']}" for n in data["nodes"])
        rows = [
            ["nodes", nodes],
            ["VIP " + data["vip"], data["vip_node"] or "NOT RUNNING"],
            ["group " + str(data["group"]), data["group_node"] or "NOT STARTED (or split)"],
            ["apache", data["apache_node"] or "NOT RUNNING"],
            ["HTTP " + data["url"],
             (f"{data['http_code']} from {data['page_node'] or 'an unnamed page'}"
              if data["http_code"] else "no answer")
             + (f" (fetched on {data['fetched_from']})" if data["fetched_from"] else "")],
        ]
        for f in data["failed_actions"]:
            rows.append(["FAILED", f"{f['resource']} {f.get('operation')} on {f['node']}: "
                                   f"rc={f.get('rc')} {f.get('reason') or ''}".rstrip()])
        print(f"== web ({data['cluster']} cluster, crm_mon read on {data['read_on']})")
        print(tabulate(rows, tablefmt="plain"))
    if not data["serving"]:
        why = data.get("fetch_error") or f"HTTP {data['http_code'] or 'no answer'}"
        raise StateError(f"the web VIP {data['vip']} does not serve a page: {why}")
    return data


