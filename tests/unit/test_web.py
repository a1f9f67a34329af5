import http.server
import json
import os
import shutil
import subprocess
import sys
import threading

import invoke
import pytest

from hatasks import crm, web
from hatasks.errors import HaError, UsageError

from conftest import FIXTURES
from test_hb import LB, FakeCluster

CAPTURES = FIXTURES / "captures"
RUNBOOK = FIXTURES / "runbook"
CHECK = web.check_command("/etc/apache2/apache2.conf")


@pytest.fixture
def lab(fake, monkeypatch):
    monkeypatch.setattr(crm, "POLL_INTERVAL", 0.01)
    return lambda *args, **kwargs: FakeCluster(fake, *args, **kwargs)


def stub_bin(tmp_path, names, body):
    """A directory holding executable scripts NAMES (with BODY) and nothing else."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for name in names:
        (d / name).write_text("#!/bin/sh\n" + body + "\n")
        (d / name).chmod(0o755)
    return d


def sh(command, path):
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                          env=dict(os.environ, PATH=str(path)))


def test_check_command_runs_apachectl_when_apache2ctl_is_absent(tmp_path):
    bin_dir = stub_bin(tmp_path, ["apachectl"], 'echo "apachectl $*"; echo "Syntax OK" >&2')
    res = sh(web.check_command("/srv/my apache/httpd.conf"), bin_dir)
    assert res.stdout.splitlines() == ["apachectl -t -f /srv/my apache/httpd.conf", "Syntax OK"]


def test_check_command_prefers_debians_apache2ctl(tmp_path):
    bin_dir = stub_bin(tmp_path, ["apachectl", "apache2ctl"], 'echo "$0 $*"; exit 1')
    res = sh(web.check_command("/etc/apache2/apache2.conf"), bin_dir)
    assert res.stdout.strip() == f"{bin_dir}/apache2ctl -t -f /etc/apache2/apache2.conf"
    assert res.returncode == 1


def test_check_ok(lab, ctx, capsys):
    fake = lab(LB, extra={CHECK: (0, (CAPTURES / "apache2ctl_t_ok.txt").read_text())})
    web.check_task(ctx, host="lb01")
    assert fake.sent == [("lb01", CHECK)]
    assert capsys.readouterr().out.strip() == "lb01: /etc/apache2/apache2.conf: Syntax OK"


def test_check_error_names_file_and_line(lab, ctx, capsys):
    text = (CAPTURES / "apache2ctl_t_included_file_error.txt").read_text()
    lab(LB, extra={CHECK: (1, text)})
    with pytest.raises(invoke.Exit) as err:
        web.check_task(ctx, host="lb02")
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
        web.check(ctx, "db01")
    assert fake.sent == []


def test_check_rejects_metacharacters(lab, ctx):
    fake = lab(LB)
    with pytest.raises(UsageError):
        web.check(ctx, "lb01|id")
    assert fake.sent == []


@pytest.fixture
def page():
    """A local web server answering "served by lb02" on / and 404 elsewhere."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>served by lb02</body></html>"
            self.send_response(200 if self.path == "/" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def fetchers(tmp_path):
    """PATH values: with curl (when this machine has it) and with python3 only."""
    only_python = tmp_path / "py"
    only_python.mkdir()
    (only_python / "python3").symlink_to(sys.executable)
    paths = [only_python]
    if shutil.which("curl"):
        with_curl = tmp_path / "curl"
        with_curl.mkdir()
        (with_curl / "curl").symlink_to(shutil.which("curl"))
        paths.append(with_curl)
    return paths


def test_fetch_command_and_parse_fetch_on_a_real_page(tmp_path, page):
    for path in fetchers(tmp_path):
        code, body = web.parse_fetch(sh(web.fetch_command(page + "/"), path).stdout)
        assert (code, web.page_node(body, ["lb01", "lb02"])) == (200, "lb02"), path
        assert web.parse_fetch(sh(web.fetch_command(page + "/gone"), path).stdout)[0] == 404


def test_fetch_command_when_nothing_answers(tmp_path):
    for path in fetchers(tmp_path):
        out = sh(web.fetch_command("http://127.0.0.1:9/", timeout=2), path).stdout
        assert web.parse_fetch(out)[0] == 0, path


def test_page_node():
    assert web.page_node("<html><body>served by lb02</body></html>", ["lb01", "lb02"]) == "lb02"
    assert web.page_node("<p>hello</p>", ["lb01", "lb02"]) is None


def test_status_reads_crm_mon_and_fetches_the_vip(lab, ctx, capsys):
    fetch = web.fetch_command("http://10.231.0.200/")
    fake = lab(LB, extra={fetch: (0, "<h1>lb02</h1>\nHATASKS_HTTP_CODE:200\n")})
    web.status_task(ctx, format="json")
    assert fake.sent == [("lb01", crm.CRM_MON), ("lb01", fetch)]
    data = json.loads(capsys.readouterr().out)
    assert (data["vip_node"], data["group_node"], data["apache_node"]) == ("lb02",) * 3
    assert (data["http_code"], data["page_node"]) == (200, "lb02")


def test_status_not_serving_exits_non_zero(lab, ctx, capsys):
    fetch = web.fetch_command("http://10.231.0.200/")
    lab(LB, extra={fetch: (7, "\nHATASKS_HTTP_CODE:000\n")})
    with pytest.raises(invoke.Exit) as err:
        web.status_task(ctx, format="table")
    assert err.value.code == HaError.STATE
    captured = capsys.readouterr()
    assert "no answer" in captured.out
    assert "does not serve" in captured.err


def test_status_of_the_db_cluster_is_refused(lab, ctx):
    fake = lab(LB)
    with pytest.raises(UsageError, match="not a load balancer"):
        web.status(ctx, "db")
    assert fake.sent == []
