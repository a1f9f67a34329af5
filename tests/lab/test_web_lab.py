"""web tasks on the real lab: Apache config test (ok and broken), VIP holder and served page."""

import json

import pytest

from .test_hb_lab import assert_healthy, group_of, inventory, one_line_error, wait_crm

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("host", ["lb01", "lb02"])
def test_check_ok(inv, host):
    proc = inv("web.check", "--host", host)
    assert proc.stdout.strip() == f"{host}: {inventory().host(host).vars['apache_conf']}: Syntax OK"


def test_check_reports_the_broken_line_then_ok_after_heal(inv):
    node = assert_healthy("lb")["groups"][group_of("lb")]
    inv("lab.fault", "--host", node, "--kind", "httpd")
    try:
        proc = inv("web.check", "--host", node, "--format", "json", check=False)
        assert proc.returncode == 3, (proc.stdout, proc.stderr)
        data = json.loads(proc.stdout)
        assert data["ok"] is False and data["file"] and data["line"] > 0
        line = one_line_error(proc, 3)
        assert f"{data['file']} line {data['line']}" in line
        # wait for the cluster to notice: the runbook's "Failed actions: resource_ap_..."
        failed = wait_crm("lb", lambda s: any(f[0] == "apache" for f in s["failures"]), 120)
    finally:
        inv("lab.heal", "--host", node)
    inv("web.check", "--host", node)
    for failed_node in sorted({f[1] for f in failed["failures"] if f[0] == "apache"}):
        inv("hb.cleanup", "--resource", "apache", "--node", failed_node, "--yes")
    assert_healthy("lb")


def test_status_names_the_vip_holder_and_the_page_it_serves(inv):
    state = assert_healthy("lb")
    node = state["groups"][group_of("lb")]
    data = json.loads(inv("web.status", "--format", "json").stdout)
    assert data["vip_node"] == data["group_node"] == data["apache_node"] == node
    assert data["http_code"] == 200 and data["serving"] is True
    assert data["page_node"] == node, data["page"]
    table = inv("web.status").stdout
    assert f"200 from {node}" in table


def test_check_of_a_db_host_is_refused(inv):
    line = one_line_error(inv("web.check", "--host", "db01", check=False), 2)
    assert "apache_conf" in line
