"""What the lab's services say: crm_mon, SHOW pool_nodes, the LB page; from them the lab's own
health definition (`problems`), the convergence test of lab.up, and the `lab.status` report."""

import urllib.request
import xml.etree.ElementTree as ET

from .base import DB_HOSTS, HOST_PATH, HOSTS, LB_HOSTS, LabError, sh
from .hosts import LabHosts


def parse_crm_mon(xml_text):
    """crm_mon XML -> {'nodes': {name: 'online|standby|offline'}, 'resources': {id: [nodes]},
    'failures': [(op_key, node, exitstatus)]}. Just what the lab needs for its health check."""
    root = ET.fromstring(xml_text)
    nodes = {}
    for n in root.iter("node"):
        if n.get("online") is None:
            continue
        if n.get("online") != "true":
            state = "offline"
        elif n.get("standby") == "true":
            state = "standby"
        else:
            state = "online"
        nodes[n.get("name")] = state
    resources = {}
    for r in root.iter("resource"):
        if r.get("role") == "Started" and r.get("active") == "true" and r.get("failed") != "true":
            resources[r.get("id")] = [n.get("name") for n in r.findall("node")]
        else:
            resources.setdefault(r.get("id"), [])
    failures = [(f.get("op_key"), f.get("node"), f.get("exitstatus")) for f in root.iter("failure")]
    return {"nodes": nodes, "resources": resources, "failures": failures}


class LabHealth(LabHosts):
    """Reading the clusters, pgpool and Apache of the lab, and judging them."""

    # ---- reading the services ------------------------------------------------------------
    def crm_mon(self, host):
        proc = self.hrun(host, "crm_mon -1 --output-as=xml", check=False, timeout=20)
        if not proc.stdout.strip().startswith("<"):
            raise LabError(
                f"{host}: crm_mon gave no XML: {(proc.stdout + proc.stderr).strip()[:200]}"
            )
        return parse_crm_mon(proc.stdout)

    def psql(self, host_ip, port, sql, db="postgres", check=True, timeout=30):
        """psql from the operator machine to a lab address (trusted from the lab subnet)."""
        env = {
            "PATH": HOST_PATH,
            "PGCONNECT_TIMEOUT": "5",
            "LANG": "C.UTF-8",
            "PGPASSFILE": str(self.pgpass),
        }
        return sh(
            [
                "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                host_ip,
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                db,
            ],
            input=sql,
            check=check,
            env=env,
            timeout=timeout,
        )

    def pool_nodes(self):
        """SHOW pool_nodes through the DB VIP: [(node_id, host, status)]."""
        proc = self.psql(self.db_vip, 9999, "SHOW pool_nodes;", check=False, timeout=15)
        if proc.returncode != 0:
            raise LabError(f"pgpool at {self.db_vip}:9999: {proc.stderr.strip()[:200]}")
        rows = []
        for line in proc.stdout.splitlines():
            f = line.split("|")
            if len(f) > 3:
                rows.append((f[0], f[1], f[3]))
        return rows

    def http_lb(self):
        with urllib.request.urlopen(f"http://{self.lb_vip}/", timeout=5) as r:
            return r.read().decode(errors="replace")

    # ---- judging them --------------------------------------------------------------------
    def problems(self):
        """Everything that keeps this lab from being 'up and healthy' ([] = healthy)."""
        out = []
        off = [h for h in HOSTS if self.pid1(h) is None]
        if off:
            return [f"powered off: {', '.join(off)}"]
        down = [h for h in HOSTS if self.link_state(h) != "up"]
        if down:
            out.append(f"link not up: {', '.join(down)}")
        faults = self.faults()
        if faults:
            out.append(
                "faults recorded: "
                + ", ".join(f"{h}:{f['kind']}" for h, fl in faults.items() for f in fl)
            )
        for hosts, group in ((DB_HOSTS, ("db-vip", "pgpool")), (LB_HOSTS, ("lb-vip", "apache"))):
            try:
                mon = self.crm_mon(hosts[0])
            except LabError as exc:
                out.append(exc.message)
                continue
            for h in hosts:
                if mon["nodes"].get(h) != "online":
                    out.append(f"{h} is {mon['nodes'].get(h, 'unknown')} (seen from {hosts[0]})")
            placed = {tuple(mon["resources"].get(r, [])) for r in group}
            if len(placed) != 1 or len(next(iter(placed))) != 1:
                out.append(
                    f"group of {hosts[0][:2]} cluster not started on one node: "
                    + ", ".join(f"{r}={mon['resources'].get(r)}" for r in group)
                )
            if mon["failures"]:
                out.append(f"failed actions in the {hosts[0][:2]} cluster: {mon['failures']}")
        try:
            nodes = self.pool_nodes()
            if [s for (_, _, s) in nodes] != ["up", "up"]:
                out.append(f"pgpool backends not both up: {nodes}")
        except LabError as exc:
            out.append(exc.message)
        try:
            page = self.http_lb()
            if "lb0" not in page:
                out.append("LB VIP page does not name a host")
        except OSError as exc:
            out.append(f"LB VIP http://{self.lb_vip}/: {exc}")
        return out

    def clusters_converged(self):
        for hosts, group in ((DB_HOSTS, ("db-vip", "pgpool")), (LB_HOSTS, ("lb-vip", "apache"))):
            mon = self.crm_mon(hosts[0])
            if any(mon["nodes"].get(h) != "online" for h in hosts):
                return False
            where = [mon["resources"].get(r) or [] for r in group]
            if len(where[0]) != 1 or any(w != where[0] for w in where):
                return False
        return True

    def status(self):
        """A dict describing the instance (hosts, clusters, pgpool)."""
        faults = self.faults()
        live = self.live_hosts()
        if not self.has_objects():
            state = "down"
        elif not live:
            state = "stale (namespaces/links left, no process: lab.up or lab.down clears it)"
        elif len(live) < len(HOSTS):
            state = "up, some hosts powered off"
        else:
            state = "up"
        info = {
            "instance": self.n,
            "state": state,
            "subnet": self.subnet,
            "owner": self.owner(),
            "state_dir": str(self.state),
            "hosts": {},
            "clusters": {},
            "pgpool": None,
        }
        for h in HOSTS:
            pid = self.pid1(h)
            info["hosts"][h] = {
                "ip": self.ip(h),
                "power": "on" if pid else "off",
                "pid1": pid,
                "link": self.link_state(h) if self.netns_present() else "absent",
                "faults": [f["kind"] for f in faults.get(h, [])],
            }
        for name, hosts in (("db", DB_HOSTS), ("lb", LB_HOSTS)):
            for h in hosts:
                if info["hosts"][h]["power"] != "on":
                    continue
                try:
                    info["clusters"][name] = dict(self.crm_mon(h), seen_from=h)
                    break
                except LabError as exc:
                    info["clusters"][name] = {"error": exc.message}
        if self.netns_present():
            try:
                info["pgpool"] = self.pool_nodes()
            except LabError as exc:
                info["pgpool"] = exc.message
        return info
