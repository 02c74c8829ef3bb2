"""ICMP echo on a real cluster (root only): ping from inside pods against what `trace --protocol
ICMP` and `probe --protocol ICMP --compare` say — a NetworkPolicy with ports keeps pings out, one
without lets them in; a ClusterIP rejects them in nftables mode ("Destination Port Unreachable")
and loses them in iptables mode; a LoadBalancer IP is answered by the node that announces it.
Waits for an answer are long (30 s, returning at the first reply); a short wait is used only where
no answer is the expected outcome. Each cluster has a unique name and is removed."""

from __future__ import annotations

import json
import secrets

import pytest

from tests.livecluster import podnet, up_cluster
from tests.test_icmp import APP, POLICIES

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = f"ic{secrets.token_hex(3)}"
    with up_cluster(tmp_path_factory.mktemp("icmp"), name, APP + POLICIES, networking="{proxyMode: nftables}"):
        yield name


def ping(name: str, address: str, wait: int) -> str:
    out = podnet("exec", "client", "--name", name, "--", "ping", "-c1", f"-W{wait}", address, check=False)
    return out.stdout + out.stderr


def traced(name: str, dst: str) -> dict:
    out = podnet("trace", "default/client", dst, "--protocol", "ICMP", "-o", "json", "--name", name, check=False)
    return json.loads(out.stdout)


def addresses(name: str) -> dict[str, str]:
    services = json.loads(podnet("get", "svc", "-o", "json", "--name", name).stdout)["items"]
    pods = json.loads(podnet("get", "pods", "-o", "json", "--name", name).stdout)["items"]
    found = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in services}
    found["lb"] = next(s for s in services if s["metadata"]["name"] == "weblb")["status"]["loadBalancer"]["ingress"][0]["ip"]
    found.update({p["metadata"]["name"] + ("-pod" if p["metadata"]["name"] in found else ""): p["status"]["podIP"]
                  for p in pods})
    return found


def test_probe_and_the_simulator_agree_on_every_ping_under_policies(cluster):
    out = podnet("probe", "--protocol", "ICMP", "--compare", "-n", "default", "-o", "json", "--timeout", "5",
                 "--name", cluster, check=False)
    document = json.loads(out.stdout)
    assert out.returncode == 0 and document["disagreements"] == [], out.stdout[-3000:]
    allowed = document["allowed"]
    assert allowed["default/client"]["default/open"] and not allowed["default/client"]["default/web"], allowed


def test_a_ping_to_a_cluster_ip_is_rejected_and_a_load_balancer_ip_answers_as_trace_says(cluster):
    at = addresses(cluster)
    rejected = ping(cluster, at["web"], 30)  # the rejection comes at once
    assert "Destination Port Unreachable" in rejected, rejected
    assert traced(cluster, at["web"])["verdict"] == "dropped"
    answered = ping(cluster, at["lb"], 30)
    assert "1 received" in answered, answered
    lb = traced(cluster, at["lb"])
    assert lb["verdict"] == "delivered" and lb["reason"].startswith("answered by node/"), lb["reason"]


def test_a_policy_with_ports_keeps_a_ping_out_as_trace_says(cluster):
    at = addresses(cluster)
    assert "1 received" in ping(cluster, at["open"], 30)
    assert "0 received" in ping(cluster, at["web-pod"], 2)  # dropped by web-8080-only: no answer is the outcome
    assert traced(cluster, "default/web")["verdict"] == "dropped"


def test_iptables_mode_loses_a_ping_to_a_cluster_ip(tmp_path):
    name = f"ii{secrets.token_hex(3)}"
    with up_cluster(tmp_path, name, APP, networking="{proxyMode: iptables}"):
        at = addresses(name)
        assert "1 received" in ping(name, at["lb"], 30)  # the cluster answers pings: this one is lost
        lost = ping(name, at["web"], 2)
        assert "0 received" in lost and "Unreachable" not in lost, lost
        result = traced(name, at["web"])
        assert result["verdict"] == "dropped" and "lost" in result["reason"]
