"""AdminNetworkPolicy and BaselineAdminNetworkPolicy as a user meets them: `get` with the CRDs'
printer columns, `describe` with the rules in evaluation order, apply/delete of cluster-scoped
objects, and the bundled example loading offline."""

import time
from pathlib import Path

import yaml

from podnet.linux.supervisor.reconcile import admitted, change_request
from tests.conftest import admitted_during, run_cli
from tests.test_validation_anp import ANP, BANP

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "admin-network-policy")


def timed_get(capsys, *argv: str) -> tuple[list[list[str]], float]:
    """`podnet get ARGV` offline: its rows, and how long it took (an offline object is created
    when computed, so its AGE is at most that, whatever the machine's speed)."""
    started = time.monotonic()
    code, out, _ = run_cli(capsys, "get", *argv)
    assert code == 0
    return [line.split() for line in out.splitlines()], time.monotonic() - started


def test_get_anp_has_the_crd_printer_columns(capsys):
    rows, took = timed_get(capsys, "anp", "-f", EXAMPLE)
    assert [row[:-1] for row in rows] == [["NAME", "PRIORITY"], ["tenant-blue", "10"], ["tenant-red", "11"]]
    assert rows[0][-1] == "AGE" and all(admitted_during(row[-1], took) for row in rows[1:])


def test_get_banp_has_the_crd_printer_columns(capsys):
    rows, took = timed_get(capsys, "baselineadminnetworkpolicies", "-f", EXAMPLE)
    assert [row[:-1] for row in rows] == [["NAME"], ["default"]]
    assert rows[0][-1] == "AGE" and admitted_during(rows[1][-1], took)


def test_get_both_kinds_names_each_with_its_group(capsys):
    code, out, _ = run_cli(capsys, "get", "anp,banp", "-o", "name", "-f", EXAMPLE)
    assert code == 0
    assert out.split() == ["adminnetworkpolicy.policy.networking.k8s.io/tenant-blue",
                           "adminnetworkpolicy.policy.networking.k8s.io/tenant-red",
                           "baselineadminnetworkpolicy.policy.networking.k8s.io/default"]


def test_describe_anp_lists_subject_and_rules_in_order(capsys):
    code, out, _ = run_cli(capsys, "describe", "anp", "tenant-blue", "-f", EXAMPLE)
    assert code == 0
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[lines.index("Subject:") + 1] == "  Namespaces: tenant=blue"
    rules = [line.strip() for line in lines if line.startswith("  [")]
    assert rules == ["[0] same-tenant-decided-by-owners: Pass", "[1] other-tenants-never: Deny",
                     "[2] monitoring-may-scrape: Allow"]
    assert "Priority:           10" in lines
    assert "    Ports: 8080/TCP" in lines and "        PodSelector: app=prober" in lines
    assert "Egress rules: <none> (this policy does not affect egress traffic)" in lines


def test_describe_shows_every_peer_and_port_form(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump_all([ANP, BANP], sort_keys=False))
    code, out, _ = run_cli(capsys, "describe", "anp", "tenants", "-f", str(tmp_path))
    assert code == 0
    for expected in ("    Ports: 8080/TCP, metrics (named port)", "      Networks: 169.254.169.254/32",
                     "      Nodes: node-role.kubernetes.io/control-plane=", "    Ports: 30000-32767/UDP",
                     "  [1] <unnamed>: Allow", "        PodSelector: app in (prober)"):
        assert expected in out.splitlines(), (expected, out)
    code, out, _ = run_cli(capsys, "describe", "banp", "default", "-f", str(tmp_path))
    assert code == 0 and "Priority" not in out
    assert "  Namespaces: <all> (every namespace)" in out.splitlines()
    assert "      Networks: 10.0.0.0/8, fd00::/8" in out.splitlines()


def test_apply_and_delete_address_cluster_scoped_policies():
    text = yaml.safe_dump_all([ANP, BANP], sort_keys=False)
    applied = change_request([], admitted(text, "apply"), delete=False)
    assert applied.lines() == ["adminnetworkpolicy/tenants created", "baselineadminnetworkpolicy/default created"]
    again = change_request(applied.inputs, admitted(text, "apply"), delete=False)
    assert again.lines() == ["adminnetworkpolicy/tenants configured", "baselineadminnetworkpolicy/default configured"]
    deleted = change_request(again.inputs, admitted(yaml.safe_dump(BANP), "delete"), delete=True)
    assert deleted.lines() == ["baselineadminnetworkpolicy/default deleted"]
    assert [body["kind"] for body in deleted.inputs] == ["AdminNetworkPolicy"]


def test_the_example_loads_and_checks_offline(capsys):
    code, out, err = run_cli(capsys, "get", "all", "-A", "-f", EXAMPLE)
    assert code == 0 and "warning" not in err
    code, out, _ = run_cli(capsys, "check", "-f", EXAMPLE, "--expect",
                           str(ROOT / "examples" / "admin-network-policy-expectations.yaml"))
    # every tier decides one of them: Pass then the owner's NetworkPolicy, Deny across tenants,
    # Allow for monitoring, the baseline's deny
    assert code == 0 and "6 expectations hold, 0 fail" in out, out
    assert "blue-web/web can reach blue-db/db on 8080/TCP" in out.splitlines()[0]
