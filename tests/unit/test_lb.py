"""lb scenarios without a cluster: refusals before any command, input validation, the failback
verified through the CIB's policy and the page served behind the VIP. State comes from patched
crm.crm_status; the CIB and the page from a fake ssh answering what the lab answers."""

import pathlib

import invoke
import pytest

from hatasks import crm, hb, lb, remote, web
from hatasks.errors import HaError, UsageError

ROOT = pathlib.Path(__file__).resolve().parents[2]

# the lab's CIB sections of the LB cluster (cibadmin --query --scope constraints / rsc_defaults)
LB_CONSTRAINTS = ('<constraints><rsc_location id="loc-grp-apache-lb01" rsc="grp-apache" '
                  'node="lb01" score="100"/></constraints>')
LB_DEFAULTS = ('<rsc_defaults><meta_attributes id="rsc-options"><nvpair id="rsc-options-'
               'resource-stickiness" name="resource-stickiness" value="0"/></meta_attributes>'
               '</rsc_defaults>')


@pytest.fixture
def ctx(tmp_path):
    return invoke.Context(config=invoke.Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))


@pytest.fixture(autouse=True)
def no_ssh(mocker):
    return mocker.patch.object(remote, "run",
                               side_effect=AssertionError("unexpected remote command"))


def lab_page(node, code=200):
    """What web.fetch_command prints on an LB node: the lab's page naming NODE, then the code."""
    return (f"<html><body><h1>{node}</h1><p>hatasks lab 0: served by {node}</p></body></html>\n"
            f"\nHATASKS_HTTP_CODE:{code}\n")


class FakeLB:
    """ssh to the LB nodes: the lab's CIB sections, and the page of whichever node serves."""

    def __init__(self, pages):
        self.pages = list(pages)
        self.fetched = []

    def __call__(self, ctx, host, command, **kw):
        name = getattr(host, "name", host)
        if command == "cibadmin --query --scope constraints":
            out = LB_CONSTRAINTS
        elif command == "cibadmin --query --scope rsc_defaults":
            out = LB_DEFAULTS
        elif command == web.fetch_command("http://10.231.0.200/"):
            self.fetched.append(name)
            out = self.pages.pop(0) if len(self.pages) > 1 else self.pages[0]
        else:
            raise AssertionError(f"unexpected remote command on {name}: {command}")
        return invoke.Result(stdout=out, stderr="", exited=0)


def crm_state(lb01="online", lb02="online", group_on="lb01"):
    return {"cluster": "lb", "read_on": "lb02", "unanswered": {},
            "nodes": [{"name": "lb01", "state": lb01}, {"name": "lb02", "state": lb02}],
            "resources": [{"id": r, "group": "grp-apache", "node": group_on, "nodes": [group_on],
                           "role": "Started"} for r in ("lb-vip", "apache")],
            "failed_actions": []}


@pytest.mark.parametrize("call,msg", [
    (lambda c: lb.failover(c, from_="db01"), "not a host of the lb cluster"),
    (lambda c: lb.failover(c, from_="lb9"), "unknown host"),
    (lambda c: lb.failback(c, to="lb01 ; id"), "not allowed"),
    (lambda c: lb.failback(c, timeout=-1), "--timeout must be greater than 0"),
    (lambda c: lb.recover(c, cluster="db"), "is a db cluster, not a lb cluster"),
])
def test_bad_input_is_refused_before_any_command(ctx, mocker, call, msg):
    read = mocker.patch.object(crm, "crm_status", side_effect=AssertionError("read state"))
    with pytest.raises(UsageError) as exc:
        call(ctx)
    assert msg in exc.value.message
    read.assert_not_called()


def test_failover_refuses_without_another_online_node(ctx, mocker):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(lb02="standby"))
    standby = mocker.patch.object(hb, "standby")
    with pytest.raises(HaError) as exc:
        lb.failover(ctx, yes=True)
    assert "no other LB node is online (lb02 standby)" in exc.value.message
    standby.assert_not_called()


def test_failback_refuses_with_a_node_offline(ctx, mocker):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(lb01="offline", group_on="lb02"))
    online = mocker.patch.object(hb, "online")
    with pytest.raises(HaError) as exc:
        lb.failback(ctx, yes=True)
    assert exc.value.code == HaError.STATE
    assert "lb01 is OFFLINE" in exc.value.message
    online.assert_not_called()


def test_failback_brings_the_standby_node_online_and_expects_the_preferred_node(ctx, mocker,
                                                                                 no_ssh):
    mocker.patch.object(crm, "crm_status", return_value=crm_state(lb01="standby", group_on="lb02"))
    online = mocker.patch.object(hb, "online")
    seen = {}

    def wait_for(ctx_, cluster, check, timeout, expected, **kw):
        seen["expected"] = expected
        assert check(crm_state(group_on="lb01")) is True
        assert check(crm_state(group_on="lb02")) is False
        return crm_state(group_on="lb01")

    mocker.patch.object(crm, "wait_for", side_effect=wait_for)
    # the VIP still serves lb02's page once, then lb01's: the failback waits for lb01's
    no_ssh.side_effect = fake = FakeLB([lab_page("lb02"), lab_page("lb01")])
    lb.failback(ctx, yes=True)
    online.assert_called_once()
    assert online.call_args.args[1] == "lb01"
    assert "back on lb01 (automatic failback)" in seen["expected"]
    assert len(fake.fetched) == 2


def test_serving_accepts_the_expected_node_or_any_page_without_one(ctx, no_ssh):
    c = remote.inventory(ctx).cluster("lb")
    no_ssh.side_effect = FakeLB([lab_page("lb01")])
    page = lb.wait_serving(ctx, c, None, 1)
    assert (page["serving"], page["http_code"], page["page_node"]) == (True, 200, "lb01")
    assert page["fetched_from"] == "lb01"
    assert lb.wait_serving(ctx, c, "lb01", 1)["page_node"] == "lb01"


def test_serving_waits_for_the_expected_node(ctx, no_ssh):
    c = remote.inventory(ctx).cluster("lb")
    no_ssh.side_effect = fake = FakeLB([lab_page("lb01"), lab_page("lb01"), lab_page("lb02")])
    assert lb.wait_serving(ctx, c, "lb02", 5)["page_node"] == "lb02"
    assert len(fake.fetched) == 3


def test_serving_gives_up_on_the_wrong_node_or_no_page(ctx, no_ssh):
    c = remote.inventory(ctx).cluster("lb")
    no_ssh.side_effect = FakeLB([lab_page("lb01")])
    with pytest.raises(HaError) as exc:
        lb.wait_serving(ctx, c, "lb02", 0.3)
    assert exc.value.code == HaError.NOT_CONVERGED
    no_ssh.side_effect = FakeLB(["\nHATASKS_HTTP_CODE:000\n"])
    with pytest.raises(HaError) as exc:
        lb.wait_serving(ctx, c, None, 0.3)
    assert exc.value.code == HaError.NOT_CONVERGED
