"""The lab's network: the bridge, each host's network namespace and its cable (a veth pair), and
which of them exist right now (a lab is "present" while any of them is left, even stale)."""

import os
import pathlib

from hatasks.errors import StateError

from .base import HOSTS, MARK, ROOT, LabBase, sh


class LabNet(LabBase):
    """Bridge hlbr{N}, namespaces hl{N}-HOST, veth cables hl{N}v-HOST <-> eth0."""

    # ---- discovery -----------------------------------------------------------------------
    def netns_present(self):
        return [h for h in HOSTS if os.path.exists(f"/run/netns/{self.ns(h)}")]

    def links_present(self):
        names = os.listdir("/sys/class/net")
        ours = {self.bridge} | {self.veth(h) for h in HOSTS} | self.mgmt_links()
        return sorted(n for n in names if n in ours)

    def has_objects(self):
        return bool(self.netns_present() or self.links_present())

    def ns_pids(self, host):
        if not os.path.exists(f"/run/netns/{self.ns(host)}"):
            return []
        proc = sh(["ip", "netns", "pids", self.ns(host)], check=False)
        return [int(p) for p in proc.stdout.split()]

    def owner(self):
        """The checkout that made this lab (the bridge's marker), or None."""
        try:
            alias = pathlib.Path(f"/sys/class/net/{self.bridge}/ifalias").read_text().strip()
        except OSError:
            return None
        parts = alias.split(" ", 2)
        if len(parts) == 3 and parts[0] == MARK and parts[1] == str(self.n):
            return parts[2]
        return None

    def link_state(self, host):
        try:
            flags = int(pathlib.Path(f"/sys/class/net/{self.veth(host)}/flags").read_text(), 16)
        except OSError:
            return "absent"
        return "up" if flags & 1 else "down"

    # ---- safety: never take a subnet something else uses ---------------------------------
    def check_subnet_free(self):
        """Refuse when 10.231.N.0/24 is in use by anything that is not this lab's bridge."""
        addrs = sh(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines()
        for line in addrs:
            f = line.split()
            if len(f) >= 4 and f[3].startswith(self.net + ".") and f[1] != self.bridge:
                raise StateError(f"subnet {self.subnet} is in use by {f[1]} ({f[3]}): refusing")
        for line in sh(["ip", "-4", "route", "show"]).stdout.splitlines():
            f = line.split()
            if f and f[0].startswith(self.net + ".") and f"dev {self.bridge}" not in line:
                raise StateError(
                    f"subnet {self.subnet} is routed elsewhere ({line.strip()}): refusing"
                )
        if self.n == 0 and pathlib.Path("/sys/class/net/lpbr0").exists():
            raise StateError("bridge lpbr0 (the feasibility lab) holds 10.231.0.0/24: refusing")

    # ---- building ------------------------------------------------------------------------
    def sysctl(self, path, value, ns=None):
        if ns:
            sh(["ip", "netns", "exec", ns, "sh", "-c", f"echo {value} > /proc/sys/{path}"])
        else:
            pathlib.Path(f"/proc/sys/{path}").write_text(f"{value}\n")

    def make_bridge(self):
        sh(["ip", "link", "add", self.bridge, "type", "bridge"])
        sh(["ip", "link", "set", self.bridge, "alias", f"{MARK} {self.n} {ROOT}"])
        self.sysctl(f"net/ipv6/conf/{self.bridge}/disable_ipv6", 1)
        sh(["ip", "addr", "add", f"{self.gw}/24", "dev", self.bridge])
        sh(["ip", "link", "set", self.bridge, "up"])

    def make_netns(self, host):
        ns = self.ns(host)
        sh(["ip", "netns", "add", ns])
        self.sysctl("net/ipv6/conf/all/disable_ipv6", 1, ns)
        self.sysctl("net/ipv6/conf/default/disable_ipv6", 1, ns)
        self.sysctl("net/ipv4/ip_forward", 0, ns)
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])

    def make_link(self, host):
        """The host's 'cable': veth hl{N}v-HOST (bridge side) <-> eth0 (host side)."""
        ns, veth = self.ns(host), self.veth(host)
        sh(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        self.sysctl(f"net/ipv6/conf/{veth}/disable_ipv6", 1)
        self.sysctl("net/ipv6/conf/eth0/disable_ipv6", 1, ns)
        sh(["ip", "link", "set", veth, "master", self.bridge])
        sh(["ip", "link", "set", veth, "up"])
        sh(["ip", "-n", ns, "addr", "add", f"{self.ip(host)}/24", "dev", "eth0"])
        sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
