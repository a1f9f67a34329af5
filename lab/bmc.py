"""Out-of-band power as sites have it: one BMC per lab host speaking IPMI over LAN.

Each BMC is OpenIPMI's `ipmi_sim` in the machine's root namespace, listening on the management
network's own address on a port of its own (BMC_PORT + the host's octet). The management network
is a second bridge (hlmb{N}, 10.232.N.0/24) with a second cable per host (hl{N}m-HOST <-> mgmt0),
as a site's out-of-band network: pulling a host's data cable (lab.fault network) leaves it able
to fence its peer, so the fencing race is decided by the cluster's priority-fencing-delay (the
node holding the groups wins), not by which node still reaches the BMCs. Its
`chassis_control` hook is lab/bin/bmc-power: `get power` tells whether the host's PID 1 lives,
`set power 0` kills it (power cut), `set power 1` starts it detached after a short POST delay,
as real hardware boots. Pacemaker fences through `stonith:fence_ipmilan` (one device per host,
see configs.py); the inventory's power_check asks the BMC (lab/bin/ipmi-power status), as an
operator's tooling would; lab.heal powers a fenced host on through its BMC.

Measured on this machine (LAB-NOTES): ipmi_sim lacks Get Channel Cipher Suites, so every
client names cipher suite 3 (`-C 3`, `--cipher=3`) or waits 10 s per call.
"""

import os
import secrets
import signal
import subprocess
import sys
import uuid

from hatasks.errors import StateError

from .base import HOSTS, LAB_DIR, OCTET, ROOT, LabError, sh, wait_until

BMC_PORT = 16000
MGMT_NET = "10.232"   # the management network of instance N: MGMT_NET.N.0/24
# how long a node waits before fencing the peer that holds the groups (cluster property
# priority-fencing-delay; the groups carry meta priority): the holder's own fencing of the
# cut peer (a few seconds) must be done first
PRIORITY_FENCING_DELAY = "15s"
BMC_USER = "admin"
EMU = ("mc_setbmc 0x20\n"
       "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\n"
       "mc_enable 0x20\n")


class LabBmc:
    """The BMCs of one lab instance (mixed into Lab)."""

    def bmc_dir(self):
        return self.state / "bmc"

    def bmc_port(self, host):
        return BMC_PORT + OCTET[host]

    def bmc_password_file(self):
        return self.bmc_dir() / "password"

    # ---- the management (out-of-band) network ------------------------------------------
    def mgmt_net(self):
        return f"{MGMT_NET}.{self.n}"

    def mgmt_gw(self):
        return f"{self.mgmt_net()}.1"

    def mgmt_bridge(self):
        return f"hlmb{self.n}"

    def mgmt_veth(self, host):
        return f"hl{self.n}m-{host}"

    def mgmt_links(self):
        return {self.mgmt_bridge()} | {self.mgmt_veth(h) for h in HOSTS}

    def make_mgmt_bridge(self):
        """The management bridge, refused when its subnet is in use by anything else."""
        net, br = self.mgmt_net() + ".", self.mgmt_bridge()
        for line in sh(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
            f = line.split()
            if len(f) >= 4 and f[3].startswith(net) and f[1] != br:
                raise StateError(f"management subnet {net}0/24 is in use by {f[1]}: refusing")
        sh(["ip", "link", "add", br, "type", "bridge"])
        self.sysctl(f"net/ipv6/conf/{br}/disable_ipv6", 1)
        sh(["ip", "addr", "add", f"{self.mgmt_gw()}/24", "dev", br])
        sh(["ip", "link", "set", br, "up"])

    def make_mgmt_link(self, host):
        """The host's management cable: hl{N}m-HOST (bridge side) <-> mgmt0 (host side)."""
        ns, veth = self.ns(host), self.mgmt_veth(host)
        sh(["ip", "link", "add", veth, "type", "veth", "peer", "name", "mgmt0", "netns", ns])
        self.sysctl(f"net/ipv6/conf/{veth}/disable_ipv6", 1)
        self.sysctl("net/ipv6/conf/mgmt0/disable_ipv6", 1, ns)
        sh(["ip", "link", "set", veth, "master", self.mgmt_bridge()])
        sh(["ip", "link", "set", veth, "up"])
        sh(["ip", "-n", ns, "addr", "add", f"{self.mgmt_net()}.{OCTET[host]}/24", "dev", "mgmt0"])
        sh(["ip", "-n", ns, "link", "set", "mgmt0", "up"])

    def fencing_on(self):
        return bool(self.read_json("running.json", {}).get("fencing"))

    def lan_conf(self, host, password):
        return (f"name \"bmc-{host}\"\n"
                f"set_working_mc 0x20\n"
                f"  startlan 1\n"
                f"    addr {self.mgmt_gw()} {self.bmc_port(host)}\n"
                f"    priv_limit admin\n"
                f"    allowed_auths_callback none md2 md5 straight\n"
                f"    allowed_auths_user none md2 md5 straight\n"
                f"    allowed_auths_operator none md2 md5 straight\n"
                f"    allowed_auths_admin none md2 md5 straight\n"
                f"    guid {uuid.uuid5(uuid.NAMESPACE_DNS, f'lab{self.n}-{host}').hex}\n"
                f"  endlan\n"
                f"  chassis_control \"{LAB_DIR / 'bin' / 'bmc-power'} {self.n} {host} "
                f"{sys.executable} {ROOT}\"\n"
                f"user 2 true \"{BMC_USER}\" \"{password}\" admin 10 md5\n")

    def bmc_write_files(self):
        """Configuration of every BMC (a fresh password and state dir per lab), and the
        password script each host's fence device reads."""
        d = self.bmc_dir()
        self.make_dir(d, mode=0o700)
        password = secrets.token_hex(8)
        self.write_file(self.bmc_password_file(), password + "\n", mode=0o600)
        for h in HOSTS:
            self.make_dir(d / h, mode=0o700)
            self.make_dir(d / h / "state", mode=0o700)
            self.write_file(d / h / "lan.conf", self.lan_conf(h, password), mode=0o600)
            self.write_file(d / h / "bmc.emu", EMU, mode=0o600)
            # inside the hosts: pacemaker-fenced runs fence_ipmilan with --password-script
            self.write_file(self.hostdir(h) / "fence-password", f"#!/bin/sh\necho {password}\n",
                            mode=0o700)

    def bmc_start(self):
        pids = {}
        for h in HOSTS:
            d = self.bmc_dir() / h
            log = open(d / "ipmi_sim.log", "a")
            proc = subprocess.Popen(
                ["ipmi_sim", "-c", str(d / "lan.conf"), "-f", str(d / "bmc.emu"),
                 "-s", str(d / "state"), "-n"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                cwd=str(d), close_fds=True)
            log.close()
            pids[h] = proc.pid
        self.write_json("bmc.json", pids)
        for h in HOSTS:
            wait_until(f"the BMC of {h} to answer", lambda h=h: self.ipmi(h, "status") in
                       ("on", "off"), 20)

    def bmc_stop(self):
        """Stop this instance's BMCs, by the PIDs recorded at start (and only if still ours)."""
        for h, pid in self.read_json("bmc.json", {}).items():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
            except OSError:
                continue
            if "ipmi_sim" in cmd and str(self.bmc_dir()) in cmd:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        try:
            (self.state / "bmc.json").unlink()
        except FileNotFoundError:
            pass

    def ipmi(self, host, action):
        """`ipmitool -I lanplus -C 3 ... chassis power ACTION` against HOST's BMC: "on"/"off"
        for status, else the tool's output. LabError when the BMC does not answer."""
        res = sh(["ipmitool", "-I", "lanplus", "-C", "3", "-H", self.mgmt_gw(), "-p",
                  str(self.bmc_port(host)), "-U", BMC_USER, "-f", str(self.bmc_password_file()),
                  "chassis", "power", action], check=False, timeout=30)
        out = (res.stdout or "").strip()
        if res.returncode != 0:
            raise LabError(f"BMC of {host}: chassis power {action}: {(res.stderr or out)[:200]}")
        if action == "status":
            return "on" if out.endswith(" on") else "off" if out.endswith(" off") else out
        return out

    def bmc_power_on(self, host):
        """Power on through the BMC (lab.heal of a fenced host), then wait for the boot."""
        self.ipmi(host, "on")
        self.wait_host(host, timeout=60)
        wait_until(f"{host} to finish booting", lambda: self.booted(host), 120, 0.2)
