"""inventory.py: the Ansible INI subset, var precedence, clusters, and one-line errors."""

import os
import pathlib

import pytest

from hatasks import inventory
from hatasks.errors import HaError, UsageError

FIX = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "inventory"
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inv():
    return inventory.load(str(FIX / "good.ini"))


def test_hosts_in_file_order_including_ungrouped(inv):
    assert inv.host_names == ["bastion", "db01", "db02", "db11", "db12", "lb01", "lb02"]
    assert inv.host("bastion").cluster is None
    assert inv.host("bastion").address == "192.0.2.1"


def test_clusters_are_groups_declaring_cluster_kind(inv):
    assert list(inv.clusters) == ["db", "db2", "lb"]
    assert inv.cluster("db").kind == "db"
    assert inv.cluster("db2").kind == "db"
    assert inv.cluster("db2").host_names == ["db11", "db12"]
    assert inv.cluster("lb").vars["vip"] == "192.0.2.200"
    assert inv.cluster_of("db12").name == "db2"


def test_inline_vars_port_and_address(inv):
    db01 = inv.host("db01")
    assert db01.address == "192.0.2.11"
    assert db01.port is None
    assert db01.vars["pgpool_node_id"] == "0"
    assert db01.vars["monitor"] == "yes"
    db02 = inv.host("db02")
    assert db02.port == 2222
    assert db02.vars["note"] == "two words"
    db12 = inv.host("db12")
    assert db12.port == 2200 and db12.user == "admin"
    assert inv.host("db11").user is None


def test_vars_sections_keep_the_rest_of_the_line_and_unquote(inv):
    db = inv.cluster("db").vars
    assert db["stack_start"] == "systemctl start corosync pacemaker"
    assert db["quoted"] == "a b # not a comment"


def test_precedence_all_lt_parent_lt_group_lt_host(inv):
    # pg_port: all 5432 < site (parent) 6000 < db 5433
    assert inv.host("db01").vars["pg_port"] == "5433"
    assert inv.host("db11").vars["pg_port"] == "6000"
    assert inv.host("lb01").vars["pg_port"] == "5432"
    assert inv.cluster("db").vars["pg_port"] == "5433"
    assert inv.cluster("db2").vars["pg_port"] == "6000"
    assert inv.cluster("db2").vars["site_name"] == "tokyo"
    # a deeper group (site, via db) beats a shallow one (monitored), as in Ansible
    assert inv.host("db01").vars["note"] == "from-site"
    assert inv.host("lb01").vars["note"] == "from-monitored"
    assert inv.host("lb02").vars["note"] == "from-all"
    # host vars beat everything
    assert inv.host("db02").vars["note"] == "two words"


def test_host_in_several_groups(inv):
    assert inv.host("db01").groups == ["db", "monitored", "site", "everything"]
    assert [h.name for h in inv.group("monitored")] == ["db01", "lb01"]
    assert [h.name for h in inv.group("everything")] == [
        "db01", "db02", "db11", "db12", "lb01", "lb02"]


def test_unknown_host_lists_the_known_ones(inv):
    with pytest.raises(UsageError) as e:
        inv.host("db03")
    msg = e.value.message
    assert "db03" in msg and "db01, db02, db11, db12, lb01, lb02" in msg
    assert e.value.code == HaError.USAGE


def test_host_in_cluster(inv):
    assert inv.host("db11", cluster="db2").name == "db11"
    with pytest.raises(UsageError, match="not in cluster db"):
        inv.host("db11", cluster="db")


def test_unknown_cluster_lists_clusters(inv):
    with pytest.raises(UsageError,
                       match=r"unknown cluster 'web'.*db \(db\), db2 \(db\), lb \(lb\)"):
        inv.cluster("web")


def test_cluster_by_kind_when_unique(tmp_path):
    p = tmp_path / "h.ini"
    p.write_text("[pgc]\ndb01\n[pgc:vars]\ncluster_kind=db\n[w]\nlb01\n[w:vars]\ncluster_kind=lb\n")
    inv = inventory.load(str(p))
    assert inv.cluster("db").name == "pgc"
    assert inv.cluster("lb").name == "w"


def test_cluster_by_kind_when_ambiguous(inv):
    # "db" is a cluster name here; kind lookups only happen for non-names
    assert inv.cluster("db").name == "db"
    p = inventory.parse("[a]\nx1\n[a:vars]\ncluster_kind=pg\n[b]\nx2\n[b:vars]\ncluster_kind=pg\n")
    with pytest.raises(UsageError, match="several clusters of kind 'pg'"):
        p.cluster("pg")


def test_pgpool_node_by_name_or_id(inv):
    assert inv.pgpool_node("db", "db02").name == "db02"
    assert inv.pgpool_node("db", 1).name == "db02"
    assert inv.pgpool_node("db2", "0").name == "db11"
    with pytest.raises(UsageError) as e:
        inv.pgpool_node("db", 7)
    assert e.value.message == "no pgpool node '7' in cluster db (nodes: db01 (id 0), db02 (id 1))"


def test_resolve_path_relative_to_inventory_folder(inv, monkeypatch):
    monkeypatch.chdir("/")
    assert inv.resolve_path("ssh/config") == str(FIX / "ssh" / "config")
    assert inv.resolve_path("/etc/x") == "/etc/x"
    assert inv.resolve_path("~/k") == os.path.expanduser("~/k")


def test_the_lab_inventory_loads():
    inv = inventory.load(str(ROOT / "hosts.ini"))
    assert inv.cluster("db").host_names == ["db01", "db02"]
    assert inv.cluster("lb").host_names == ["lb01", "lb02"]
    assert inv.host("db02").vars["pgpool_node_id"] == "1"
    assert inv.cluster("lb").vars["power_check"] == "lab/bin/power-check {host}"
    assert inv.resolve_path(inv.host("db01").vars["ssh_config"]) == str(ROOT / "lab" / "ssh_config")


@pytest.mark.parametrize("name, line, problem", [
    ("bad_kind.ini", 4, "unknown section kind 'hostvars'"),
    ("bad_port.ini", 3, "bad port '99999' for host db01"),
    ("bad_kv.ini", 2, "bad host var 'pgpool_node_id' for db01"),
    ("bad_child.ini", 6, "child group 'dbx' of site is not defined"),
    ("bad_conflict.ini", 5,
     "pgpool_node_id of host db01 set again with another value (first at line 2)"),
    ("bad_varsline.ini", 3, "expected key=value in [db:vars]"),
])
def test_malformed_files_name_file_line_and_problem(name, line, problem):
    path = str(FIX / name)
    with pytest.raises(UsageError) as e:
        inventory.load(path)
    msg = e.value.message
    assert msg.startswith(f"{path}:{line}: ")
    assert problem in msg
    assert "\n" not in msg


@pytest.mark.parametrize("text, line, problem", [
    ("[db\ndb01\n", 1, "no closing ']'"),
    ("[db]\ndb01:\n", 2, "bad port ''"),
    ("[db]\ndb01:ssh\n", 2, "bad port 'ssh'"),
    ("[db]\ndb[01:02]\n", 2, "host ranges are not supported"),
    ("[db]\n'db01\n", 2, "cannot split host line"),
    ("[db]\ndb01 a=1\ndb01 a=2\n", 3, "a of host db01 set again"),
    ("[db]\ndb01:22\n[x]\ndb01:2222\n", 4, "host db01 given port 2222 but port 22 at line 2"),
    ("[db:vars]\nk=1\n[db:vars]\nk=2\n", 4,
     "k of group db set again with another value (first at line 2)"),
    ("[db:vars]\n1k=1\n", 2, "expected key=value"),
    ("[a:children]\nb\n[b:children]\na\n", 4, "cycle"),
    ("[all]\nx\n", 1, "only have a [all:vars]"),
    ("[db]\ndb01 ansible_port=x\n", 2, "bad ansible_port 'x'"),
    ("[db:vars]\nk='unterminated\n", 2, "bad quoted value"),
])
def test_malformed_text(text, line, problem):
    with pytest.raises(UsageError) as e:
        inventory.parse(text, "site.ini")
    assert e.value.message.startswith(f"site.ini:{line}: ")
    assert problem in e.value.message


def test_same_definition_twice_is_fine():
    inv = inventory.parse("[db]\ndb01 a=1\n[db:vars]\nk=1\nk=1\n[x]\ndb01 a=1\n")
    assert inv.host("db01").vars["a"] == "1"


def test_unreadable_file(tmp_path):
    missing = tmp_path / "nope.ini"
    with pytest.raises(UsageError) as e:
        inventory.load(str(missing))
    assert e.value.message == f"{missing}: cannot read inventory: No such file or directory"
