"""web tasks: the exact commands sent, parsing of apachectl and of the page through the VIP."""

import json

import invoke
import pytest

from hatasks import hb, remote, web
from hatasks.errors import HaError, UsageError

try:  # the fakes of the hb tests (tests/unit may or may not be a package)
    from .test_hb import LB, ROOT, FakeCluster, FakeConn, make_ctx
except ImportError:
    from test_hb import LB, ROOT, FakeCluster, FakeConn, make_ctx

CAPTURES = ROOT / "tests" / "fixtures" / "captures"
RUNBOOK = ROOT / "tests" / "fixtures" / "runbook"

CHECK = ("if command -v apache2ctl >/dev/null 2>&1; then apache2ctl -t -f "
         "/etc/apache2/apache2.conf; else apachectl -t -f /etc/apache2/apache2.conf; fi 2>&1")


@pytest.fixture
def lab(mocker):
    holder = {}
    mocker.patch.object(remote, "connection",
                        side_effect=lambda ctx, host: FakeConn(host.name, holder["cluster"]))

    def install(*args, **kwargs):
        holder["cluster"] = FakeCluster(*args, **kwargs)
        return holder["cluster"]

    return install


@pytest.fixture
def ctx(tmp_path):
    return make_ctx(tmp_path)


def test_check_command_is_pinned():
    assert web.check_command("/etc/apache2/apache2.conf") == CHECK
    assert "-f '/srv/my apache/httpd.conf'" in web.check_command("/srv/my apache/httpd.conf")


def test_check_ok(lab, ctx, capsys):
    fake = lab(LB, extra={CHECK: ((CAPTURES / "apache2ctl_t_ok.txt").read_text(), "", 0)})
    web.check(ctx, host="lb01")
    assert fake.sent == [("lb01", CHECK)]
    assert capsys.readouterr().out.strip() == "lb01: /etc/apache2/apache2.conf: Syntax OK"


def test_check_error_names_file_and_line(lab, ctx, capsys):
    text = (CAPTURES / "apache2ctl_t_included_file_error.txt").read_text()
    lab(LB, extra={CHECK: (text, "", 1)})
    with pytest.raises(invoke.Exit) as err:
        web.check(ctx, host="lb02")
    assert err.value.code == HaError.STATE
    msg = capsys.readouterr().err.strip()
    assert "\n" not in msg
    assert "/tmp/hatest-apache/apache2/ports.conf line 14" in msg
    assert "Listen requires 1 or 2 arguments." in msg


def test_parse_check_on_the_2008_manual_sample():
    data = web.parse_check((RUNBOOK / "apachectl_syntax_error.txt").read_text(), 1)
    assert (data["ok"], data["line"], data["file"]) == (
        False, 423, "/opt/Openstandia/apache2.2/conf/httpd.conf")
    assert data["message"].startswith("Invalid command 'hoge'")


def test_parse_check_missing_config():
    data = web.parse_check((CAPTURES / "apache2_t_missing_config.txt").read_text(), 1)
    assert not data["ok"] and data["file"] == "/tmp/hatest-apache/apache2/nonexist.conf"
    assert "No such file" in data["message"]


def test_check_on_a_db_host_is_refused_before_anything_runs(lab, ctx):
    fake = lab(LB)
    with pytest.raises(UsageError, match="no apache_conf"):
        web.check_step(ctx, "db01")
    assert fake.sent == []


def test_check_rejects_metacharacters(lab, ctx):
    fake = lab(LB)
    with pytest.raises(UsageError):
        web.check_step(ctx, "lb01|id")
    assert fake.sent == []


def test_fetch_and_parse():
    cmd = web.fetch_command("http://10.231.0.200/")
    assert cmd.startswith("if command -v curl >/dev/null 2>&1; then curl -s -m 5 -w "
                          "'\nHATASKS_HTTP_CODE:%{http_code}\n' http://10.231.0.200/; ")
    code, body = web.parse_fetch("<h1>lb02</h1>\n\nHATASKS_HTTP_CODE:200\n")
    assert (code, body) == (200, "<h1>lb02</h1>")
    assert web.parse_fetch("\nHATASKS_HTTP_CODE:000\n")[0] == 0
    assert web.page_node("<html><body>served by lb02</body></html>", ["lb01", "lb02"]) == "lb02"
    assert web.page_node("<p>hello</p>", ["lb01", "lb02"]) is None


def test_status_reads_crm_mon_and_fetches_the_vip(lab, ctx, capsys):
    fetch = web.fetch_command("http://10.231.0.200/")
    fake = lab(LB, extra={fetch: ("<h1>lb02</h1>\nHATASKS_HTTP_CODE:200\n", "", 0)})
    web.status(ctx, format="json")
    assert fake.sent == [("lb01", hb.CRM_MON), ("lb01", fetch)]
    data = json.loads(capsys.readouterr().out)
    assert (data["vip_node"], data["group_node"], data["apache_node"]) == ("lb02",) * 3
    assert (data["http_code"], data["page_node"]) == (200, "lb02")


def test_status_not_serving_exits_non_zero(lab, ctx, capsys):
    fetch = web.fetch_command("http://10.231.0.200/")
    lab(LB, extra={fetch: ("\nHATASKS_HTTP_CODE:000\n", "", 7)})
    with pytest.raises(invoke.Exit) as err:
        web.status(ctx, format="table")
    assert err.value.code == HaError.STATE
    captured = capsys.readouterr()
    assert "no answer" in captured.out
    assert "does not serve" in captured.err


def test_status_of_the_db_cluster_is_refused(lab, ctx):
    fake = lab(LB)
    with pytest.raises(UsageError, match="not a load balancer"):
        web.status_step(ctx, "db")
    assert fake.sent == []
