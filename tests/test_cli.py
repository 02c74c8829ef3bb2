"""The command line as a user meets it: tables, formats, selectors, help, and errors without tracebacks."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from podnet.cli import node as node_cli
from podnet.cli import running
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
SHOP = str(ROOT / "examples" / "shop")


run = run_cli


def test_get_pods_wide_has_kubectl_columns(capsys):
    code, out, _ = run(capsys, "get", "pods", "-n", "shop", "-o", "wide", "-f", SHOP)
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "IP" in header and "NODE" in header
    assert all(" Running " in line and "10.244." in line for line in out.splitlines()[1:])


def test_get_services_shows_nodeport_and_loadbalancer_ip(capsys):
    code, out, _ = run(capsys, "get", "svc", "-n", "shop", "-f", SHOP)
    frontend = next(l for l in out.splitlines() if l.startswith("frontend "))
    assert "NodePort" in frontend and "80:30080/TCP" in frontend
    public = next(l for l in out.splitlines() if l.startswith("shop-public "))
    assert re.search(r"192\.168\.1\.2[0-4]\d", public), "an address from the LoadBalancer pool"


def test_all_namespaces_adds_namespace_column_and_short_names_work(capsys):
    code, out, _ = run(capsys, "get", "po", "-A", "-f", SHOP)
    assert out.splitlines()[0].split()[0] == "NAMESPACE" and "kube-system" in out


def test_output_name_and_label_selector(capsys):
    code, out, _ = run(capsys, "get", "deploy", "-n", "shop", "-o", "name", "-l", "app.kubernetes.io/name=frontend", "-f", SHOP)
    assert out.split() == ["deployment.apps/frontend"]


def test_single_name_with_json_prints_the_object_itself(capsys):
    import json

    code, out, _ = run(capsys, "get", "svc", "kubernetes", "-o", "json", "-f", SHOP)
    assert json.loads(out)["spec"]["clusterIP"] == "10.96.0.1"


def test_not_found_is_kubectls_message(capsys):
    code, _, err = run(capsys, "get", "pod", "nope", "-f", SHOP)
    assert code == 1 and 'pods "nope" not found' in err


def test_unknown_resource_type(capsys):
    code, _, err = run(capsys, "get", "widgets", "-f", SHOP)
    assert code == 2 and 'resource type "widgets"' in err


def test_describe_service_lists_endpoints(capsys):
    code, out, _ = run(capsys, "describe", "svc", "backend", "-n", "shop", "-f", SHOP)
    assert code == 0 and "Endpoints:" in out and "10.244." in out and "TargetPort:" in out


def test_without_f_and_no_running_cluster_says_what_to_do(capsys):
    code, _, err = run(capsys, "get", "pods", "--name", "no-such-cluster")
    assert code == 1 and "-f" in err


def test_invalid_input_prints_located_errors_and_nothing_on_stdout(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 0\n")
    proc = subprocess.run([sys.executable, "-m", "podnet", "get", "svc", "-f", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"{bad}:7: Service default/web: spec.ports[0].port:")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [[], ["get"], ["describe"], ["config", "view"], ["version"], ["node"]])
def test_every_command_has_help_with_examples(command):
    proc = subprocess.run([sys.executable, "-m", "podnet", *command, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "examples:" in proc.stdout


def test_flags_may_follow_or_precede_names_as_with_kubectl(capsys):
    code, out, _ = run(capsys, "get", "po", "-n", "data", "redis-0", "-o", "name", "-f", SHOP)
    assert code == 0 and out.strip() == "pod/redis-0"


def test_yaml_output_has_no_anchors(capsys):
    code, out, _ = run(capsys, "get", "ep,endpointslices", "-A", "-o", "yaml", "-f", SHOP)
    assert code == 0 and "&id" not in out and "*id" not in out


def test_json_file_with_several_objects_and_yaml_flow_on_stdin(tmp_path, stdin_text, capsys):
    two = tmp_path / "two.json"
    two.write_text('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}\n'
                   '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}\n')
    stdin_text("{apiVersion: v1, kind: Namespace, metadata: {name: c}}\n")
    code, out, _ = run(capsys, "get", "ns", "-o", "name", "-f", str(two), "-f", "-")
    assert {"namespace/a", "namespace/b", "namespace/c"} <= set(out.split())


def test_apply_sends_the_files_as_read_and_prints_the_answer_and_its_warnings(capsys, tmp_path, monkeypatch):
    pod = tmp_path / "pod.yaml"
    pod.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c, image: pause}]}\n")
    sent = []
    monkeypatch.setattr(running.os, "geteuid", lambda: 0)
    monkeypatch.setattr(running, "pick_cluster", lambda name: name)
    monkeypatch.setattr(running, "request", lambda layout, op, **fields: sent.append((layout, op, fields)) or
                        {"ok": True, "lines": ["pod/x created"], "warnings": ["pod.yaml:1: warning: w"]})
    code, out, err = run(capsys, "apply", "-f", str(pod), "--name", "c1")
    assert (code, out, err) == (0, "pod/x created\n", "pod.yaml:1: warning: w\n")
    assert sent == [("c1", "apply", {"files": {str(pod): pod.read_text()}})]
    code, _, err = run(capsys, "delete", "-f", str(tmp_path / "missing.yaml"), "--name", "c1")
    assert code == 1 and "missing.yaml: no such file or directory" in err and len(sent) == 1  # never sent


def test_node_restart_asks_the_supervisor_and_lists_the_pods_started_again(capsys, monkeypatch):
    sent = []
    monkeypatch.setattr(running.os, "geteuid", lambda: 0)
    monkeypatch.setattr(node_cli, "pick_cluster", lambda name: name)
    monkeypatch.setattr(node_cli, "request", lambda layout, op, **fields: sent.append((layout, op, fields)) or
                        {"ok": True, "node": "node2", "pods": ["default/a", "default/b"], "warnings": ["Warning: w"]})
    code, out, err = run(capsys, "node", "restart", "node2", "--name", "c1")
    assert sent == [("c1", "restartNode", {"node": "node2"})]
    assert code == 0 and out.startswith("node/node2 restarted: 2 pods started again (") and err == "Warning: w\n"
    assert out.splitlines()[1:] == ["  default/a", "  default/b"]
