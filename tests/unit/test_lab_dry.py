"""``inv --dry lab.*`` on an offline lab: the lab tasks print what they would do and change
nothing. No lab is needed (every read answers as a live, healthy lab 0 of this checkout would;
anything that would act raises), so these run with the unit tests."""

import os
import subprocess

import invoke
import pytest

from lab import tasks as labtasks
from lab.core import HOSTS, Lab

from conftest import ROOT


class Acted(Exception):
    """The lab tried to act on the machine (a command, a signal, a process)."""


@pytest.fixture
def offline_lab(tmp_path, monkeypatch):
    """The lab tasks on a lab that answers every read as a live, healthy lab 0 of this checkout
    would, with its state under tmp_path; any command, signal or process it starts raises Acted."""
    printed = []

    class OfflineLab(Lab):
        def __init__(self, n=None, out=None, dry=False):
            super().__init__(0, out=lambda msg, **kw: printed.append(msg), dry=dry)
            self.state = tmp_path / "state"

        def netns_present(self):
            return list(HOSTS)

        def links_present(self):
            return sorted([self.bridge] + [self.veth(h) for h in HOSTS])

        def live_hosts(self):
            return list(HOSTS)

        def owner(self):
            return str(ROOT)

        def pid1(self, host):
            return 4242

        def link_state(self, host):
            return "up"

    def act(*args, **kwargs):
        raise Acted(args)

    monkeypatch.setattr(labtasks, "Lab", OfflineLab)
    monkeypatch.setattr(subprocess, "run", act)
    monkeypatch.setattr(subprocess, "Popen", act)
    monkeypatch.setattr(os, "kill", act)
    conf = tmp_path / "state" / "hosts" / "lb02" / "fs" / "etc" / "apache2" / "apache2.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("ServerName lb02\n")
    return OfflineLab, printed, conf


def inv_context(dry):
    """The context `inv` gives a task; `inv --dry` sets run.dry."""
    return invoke.Context(invoke.Config(overrides={"run": {"dry": dry}}))


def test_dry_fault_and_down_change_nothing(offline_lab, tmp_path):
    _, printed, conf = offline_lab
    labtasks.fault(inv_context(True), host="lb02", kind="httpd")
    assert conf.read_text() == "ServerName lb02\n"
    assert not (tmp_path / "state" / "faults.json").exists()
    assert not (tmp_path / "state" / "hosts" / "lb02" / "fault-backup").exists()
    assert "[dry] would inject fault httpd on lb02: apache2.conf broken" in printed[-1]
    labtasks.down(inv_context(True))
    assert "[dry] would tear down lab 0: kill PID 1 of db01, db02, lb01, lb02" in printed[-1]
    labtasks.reboot(inv_context(True), host="db01")
    assert printed[-1].endswith("[dry] would reboot db01 (stack stop, PostgreSQL stop, boot)")
    assert not (tmp_path / "state" / ".lock").exists()


def test_dry_up_of_an_unhealthy_lab_says_it_would_rebuild(offline_lab, monkeypatch):
    OfflineLab, printed, _ = offline_lab
    monkeypatch.setattr(OfflineLab, "problems", lambda self: ["pgpool backends not both up"])
    monkeypatch.setattr(OfflineLab, "check_subnet_free", lambda self: None)
    labtasks.up(inv_context(True))
    assert [m.split(": ", 1)[1].split(":")[0] for m in printed] == [
        "up but not healthy, [dry] would rebuild",
        "[dry] would tear down lab 0",
        "[dry] would start lab 0 (subnet 10.231.0.0/24, bridge hlbr0)",
    ]


def test_without_dry_the_same_offline_lab_acts(offline_lab):
    """The counter-proof: the stubs above reach the code that acts, so the dry test is not
    passing only because nothing could have acted."""
    _, printed, conf = offline_lab
    with pytest.raises(Acted):
        labtasks.fault(inv_context(False), host="lb02", kind="httpd")
    assert "ThisIsNotADirective" in conf.read_text()
    with pytest.raises(Acted):
        labtasks.down(inv_context(False))


def test_dry_heal_lists_what_it_would_undo(offline_lab, tmp_path):
    OfflineLab, printed, conf = offline_lab
    lab = OfflineLab(dry=True)
    lab.backup("lb02", "/etc/apache2/apache2.conf")
    conf.write_text("broken\n")
    labtasks.heal(inv_context(True), host="lb02")
    assert printed[-1].endswith("[dry] heal lb02: would do: apache2.conf restored")
    assert conf.read_text() == "broken\n"
    assert lab.backup_path("lb02", "/etc/apache2/apache2.conf").exists()


def test_every_host_has_its_own_copy_of_each_host_dir():
    """hostinit.sh bind-mounts exactly lab.base.HOST_DIRS, and among them hatasks' own lock_dir:
    lab hosts share the machine's root file system, so a directory left out is one file for
    every host of every instance (lock and newest-data records crossed instances)."""
    import re

    from hatasks import lock
    from lab.base import HOST_DIRS

    text = (ROOT / "lab" / "hostinit.sh").read_text()
    loop = re.search(r"^for d in (.*?); do$", text, re.S | re.M).group(1)
    assert loop.replace("\\\n", " ").split() == list(HOST_DIRS)
    assert lock.DEFAULT_DIR.lstrip("/") in HOST_DIRS
