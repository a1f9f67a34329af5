"""pgpool is the truth about node ids: its backend hostnames against the inventory's names and
addresses when one side is fully qualified and the other short, or an address (issue 10)."""

import pytest

from hatasks import backends, inventory

from conftest import ROOT


def rows(*hosts, port=5432):
    return {"backends": [{"node_id": i, "host": h, "port": port} for i, h in enumerate(hosts)]}


@pytest.mark.parametrize("a,b,same", [
    ("db01", "db01", True),
    ("DB01.Example.COM.", "db01.example.com", True),
    ("db01", "db01.example.com", True),
    ("db01.example.com", "db01", True),
    ("db01.a.example", "db01.b.example", False),
    ("db01", "db02.example.com", False),
    ("10.0.0.11", "10.0.0.11", True),
    ("10.0.0.11", "10", False),
    ("10.0.0.11", "db01", False),
    ("", "db01", False),
])
def test_same_name(a, b, same):
    assert backends.same_name(a, b) is same


def db_cluster(tmp_path, names, addresses):
    text = (ROOT / "hosts.ini").read_text()
    for old, new in zip(("db01", "db02"), names):
        text = text.replace(f"\n{old} ansible_host", f"\n{new} ansible_host")
    for old, new in zip(("10.231.0.11", "10.231.0.12"), addresses):
        text = text.replace(f"ansible_host={old}", f"ansible_host={new}")
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    return inventory.load(str(path)).cluster("db")


def test_fqdn_in_pgpool_short_names_in_the_inventory_agree(tmp_path):
    c = db_cluster(tmp_path, ("db01", "db02"), ("db01.site", "db02.site"))
    assert backends.id_disagreements(c, rows("db01.site.example", "db02.site.example")) == []


def test_fqdn_inventory_short_names_in_pgpool_agree(tmp_path):
    c = db_cluster(tmp_path, ("db01.site.example", "db02.site.example"), ("10.0.0.11", "10.0.0.12"))
    assert [h.name for h in c.hosts] == ["db01.site.example", "db02.site.example"]
    assert backends.id_disagreements(c, rows("db01", "db02")) == []
    # pgpool names the backends by address: the inventory's ansible_host
    assert backends.id_disagreements(c, rows("10.0.0.11", "10.0.0.12")) == []


def test_swapped_ids_are_still_found_across_the_two_spellings(tmp_path):
    c = db_cluster(tmp_path, ("db01.site.example", "db02.site.example"), ("10.0.0.11", "10.0.0.12"))
    lines = backends.id_disagreements(c, rows("db02", "db01"))
    assert "inventory: db01.site.example is pgpool node 0; pgpool: node 0 is db02:5432" in lines


def test_an_address_the_inventory_does_not_hold_is_a_disagreement(tmp_path):
    """Nothing is resolved: pgpool's 10.0.0.11 against an inventory that knows db01 only by
    name cannot be proved the same host, so it is refused, naming both."""
    c = db_cluster(tmp_path, ("db01", "db02"), ("db01.site", "db02.site"))
    lines = backends.id_disagreements(c, rows("10.0.0.11", "10.0.0.12"))
    assert "inventory: db01 is pgpool node 0; pgpool: node 0 is 10.0.0.11:5432" in lines
