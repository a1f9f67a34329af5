"""The lab's hosts as running machines: each host's PID 1 (power on = start it, power off = kill
it), running commands inside a host, waiting for its sshd and its boot, and an orderly reboot."""

import os
import pathlib
import signal
import socket
import subprocess
import time

from hatasks.errors import HaError, StateError

from .base import HOST_PATH, HOSTS, LAB_DIR, PG_HOME, LabError, nspid_chain, sh, wait_until
from .net import LabNet


class LabHosts(LabNet):
    """Power, processes and commands of the four hosts."""

    # ---- power ---------------------------------------------------------------------------
    def pid1(self, host):
        """Root-namespace PID of the host's PID 1 (hostinit.sh), or None when powered off."""
        for pid in self.ns_pids(host):
            chain = nspid_chain(pid)
            if len(chain) == 2 and chain[1] == 1:
                return pid
        return None

    def live_hosts(self):
        return [h for h in HOSTS if self.ns_pids(h)]

    def start_init(self, host, boot=False):
        """Power on: PID 1 of the host in its own namespaces (detached from this process)."""
        for mountpoint in ("/opt/hatasks-lab/bin", "/opt/hatasks-lab/host"):
            pathlib.Path(mountpoint).mkdir(parents=True, exist_ok=True)
        log = open(self.hostdir(host) / "init.log", "a")
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns(host),
                "unshare",
                "--uts",
                "--ipc",
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
                str(LAB_DIR / "hostinit.sh"),
                host,
                str(self.hostdir(host)),
                str(LAB_DIR),
                "1" if boot else "0",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd="/",
            env={"PATH": HOST_PATH, "LANG": "C.UTF-8"},
        )
        log.close()

    def drain(self, host, timeout=10):
        """Wait until no process is left in the host's network namespace (SIGKILL stragglers:
        processes that entered the netns without its PID namespace)."""
        deadline = time.monotonic() + timeout
        killed = False
        while True:
            pids = self.ns_pids(host)
            if not pids:
                return
            if time.monotonic() > deadline:
                raise LabError(f"{host}: processes survive teardown: {pids}")
            if not killed and time.monotonic() > deadline - timeout + 2:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed = True
            time.sleep(0.1)

    # ---- running things inside a host ----------------------------------------------------
    def hargv(self, host, script, user="root"):
        pid = self.pid1(host)
        if pid is None:
            raise LabError(f"{host} is powered off (no PID 1)", HaError.UNREACHABLE)
        argv = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--"]
        env = ["env", "-i", f"PATH={HOST_PATH}", "LANG=C.UTF-8", "TERM=dumb"]
        if user == "root":
            return argv + env + ["HOME=/root", "USER=root", "bash", "-c", script]
        home = PG_HOME if user == "postgres" else "/"
        return (
            argv
            + ["runuser", "-u", user, "--"]
            + env
            + [f"HOME={home}", f"USER={user}", "bash", "-c", script]
        )

    def hrun(self, host, script, user="root", check=True, input=None, timeout=60):
        """Run a bash script inside a lab host (as root or another user); CompletedProcess."""
        proc = sh(self.hargv(host, script, user), check=False, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise LabError(
                f"{host}: command failed (rc={proc.returncode}): {script}\n"
                f"{(proc.stdout + proc.stderr).strip()}"
            )
        return proc

    # ---- boot ----------------------------------------------------------------------------
    def sshd_ready(self, host):
        try:
            with socket.create_connection((self.ip(host), 22), timeout=1) as s:
                return s.recv(4).startswith(b"SSH")
        except OSError:
            return False

    def wait_host(self, host, timeout=20):
        wait_until(
            f"{host} to boot (PID 1 + sshd)",
            lambda: self.pid1(host) and self.sshd_ready(host),
            timeout,
            0.1,
        )

    def booted(self, host):
        return (
            self.hrun(host, "test -e /run/hatasks-lab/booted", check=False, timeout=10).returncode
            == 0
        )

    def reboot(self, host):
        """An orderly reboot of one host: hostinit.sh stops the stack and PostgreSQL, kills
        the rest,
        clears volatile state, boots again (PostgreSQL + stack start at boot). Waits for the boot.
        """
        self.check_host(host)
        if self.pid1(host) is None:
            raise StateError(f"{host} is powered off (heal it to power it on)")
        if self.dry:
            self.progress(f"[dry] would reboot {host} (stack stop, PostgreSQL stop, boot)")
            return
        wait_until(f"{host} to finish its current boot", lambda: self.booted(host), 60)
        self.hrun(host, "kill -USR1 1")
        self.progress(f"{host}: rebooting (stack stop, PostgreSQL stop, boot)")
        wait_until(f"{host} to shut down", lambda: not self.booted(host), 240, 0.2)
        wait_until(f"{host} to boot", lambda: self.booted(host) and self.sshd_ready(host), 120, 0.2)
        self.progress(f"{host}: rebooted (PostgreSQL and the cluster stack started at boot)")
