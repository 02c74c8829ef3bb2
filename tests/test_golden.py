"""Golden `get -o json` output for the bundled examples: any change of behaviour shows as a diff.

Regenerate after an intended change with:  PODNET_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

import json
import os
import time
from pathlib import Path

import pytest

from podnet.api.loader import load_files
from podnet.api.store import admit
from podnet.cli.main import main
from podnet.config import ClusterConfig
from podnet.output.age import parse
from podnet.controlplane import compute
from podnet.policy import render

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
EVERY_KIND = ("namespaces,nodes,pods,services,endpoints,endpointslices,deployments,replicasets,statefulsets,"
              "daemonsets,networkpolicies,ingresses,ingressclasses,configmaps,secrets,serviceaccounts")
CASES = ["shop"] + sorted(p.stem for p in (ROOT / "examples" / "seeds").glob("*.yaml"))


def source_of(case: str) -> Path:
    return ROOT / "examples" / case if case == "shop" else ROOT / "examples" / "seeds" / f"{case}.yaml"


@pytest.mark.parametrize("case", CASES)
def test_get_json_matches_golden(case, capsys):
    started = int(time.time()) - 5  # the command's own stamps; slack, since one was seen a second early under xdist
    assert main(["get", EVERY_KIND, "-A", "-o", "json", "-f", str(source_of(case))]) == 0
    produced = json.loads(capsys.readouterr().out)
    for item in produced["items"]:  # admitted by the command: stamped with its start, not part of the golden
        if parse(item["metadata"]["creationTimestamp"]) >= started:
            del item["metadata"]["creationTimestamp"]
        for condition in (item.get("status") or {}).get("conditions") or []:
            if (parse(condition.get("lastTransitionTime")) or 0) >= started:
                condition["lastTransitionTime"] = None
    golden = GOLDEN / f"{case}.json"
    if os.environ.get("PODNET_UPDATE_GOLDEN") or not golden.exists() and os.environ.get("PODNET_CREATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(json.dumps(produced, indent=2, sort_keys=True) + "\n")
    expected = json.loads(golden.read_text())
    assert produced == expected


def test_items_have_kubectl_shape_with_status(capsys):
    assert main(["get", "pods,svc,endpointslices", "-n", "shop", "-o", "json", "-f", str(source_of("shop"))]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["kind"] == "List" and listing["apiVersion"] == "v1"
    pods = [i for i in listing["items"] if i["kind"] == "Pod"]
    assert pods and all(p["status"]["podIP"] and p["status"]["hostIP"] and p["spec"]["nodeName"] for p in pods)
    assert all({c["type"] for c in p["status"]["conditions"]} >= {"Ready", "PodScheduled"} for p in pods)
    lb = next(i for i in listing["items"] if i["kind"] == "Service" and i["spec"]["type"] == "LoadBalancer")
    assert lb["status"]["loadBalancer"]["ingress"][0]["ip"].startswith("192.168.1.2")
    slices = [i for i in listing["items"] if i["kind"] == "EndpointSlice"]
    assert slices and all(s["apiVersion"] == "discovery.k8s.io/v1" and s["addressType"] == "IPv4" for s in slices)


def test_shop_networkpolicy_tables_match_golden():
    """The NetworkPolicy tables of every node of examples/shop (podnet.policy: inet, and bridge's
    anti-spoofing), as `nft -f` input."""
    cluster = compute(admit(load_files([str(source_of("shop"))])), ClusterConfig())
    tables = {node.name: render(cluster, node.name) for node in cluster.nodes}
    produced = "".join(f"# node {name}\n" + tables[name].text() + tables[name].bridge_text() for name in sorted(tables))
    golden = GOLDEN / "shop-netpol.nft"
    if os.environ.get("PODNET_UPDATE_GOLDEN") or not golden.exists() and os.environ.get("PODNET_CREATE_GOLDEN"):
        golden.write_text(produced)
    assert produced == golden.read_text()


def test_rbac_bootstrap_policy_matches_golden():
    """The ClusterRoles (aggregated) and ClusterRoleBindings every cluster has, as `get -o json` items."""
    cluster = compute(admit(load_files([])), ClusterConfig())
    items = [o.body for kind in ("ClusterRole", "ClusterRoleBinding") for o in cluster.of_kind(kind)]
    produced = json.dumps(items, indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / "rbac-bootstrap-policy.json"
    if os.environ.get("PODNET_UPDATE_GOLDEN") or not golden.exists() and os.environ.get("PODNET_CREATE_GOLDEN"):
        golden.write_text(produced)
    assert produced == golden.read_text()
