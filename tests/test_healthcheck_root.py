"""kube-proxy's healthCheckNodePort on a real cluster (root only): from `external` on the LAN,
each node answers 200 when it has a ready endpoint of the externalTrafficPolicy Local Service
and 503 when it has none, with kube-proxy's JSON, as `trace` says; a pod started on the other
node turns its answer to 200. Waits poll with generous deadlines; nothing asserts a duration.
The cluster has a unique name and is removed."""

from __future__ import annotations

import json
import secrets
import time

import pytest

from tests.livecluster import podnet, up_cluster
from tests.test_healthcheck import APP

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

SECOND = """apiVersion: v1
kind: Pod
metadata: {name: web2, labels: {app: web}}
spec:
  nodeName: node1
  containers: [{name: app, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec, --http-port=8080, --udp-port=8081]}]
"""


def asked(name: str, node_ip: str) -> tuple[int, dict | None]:
    out = podnet("exec", "external", "--name", name, "--", "curl", "-s", "-m", "30", "-w", "\n%{http_code}",
                 f"http://{node_ip}:32100/healthz", check=False).stdout
    body, _, status = out.rpartition("\n")
    return int(status or 0), (json.loads(body) if body.strip() else None)


def traced(name: str, node_ip: str) -> str:
    out = podnet("trace", "external", f"{node_ip}:32100", "-o", "json", "--name", name, check=False).stdout
    return json.loads(out)["hops"][-1]["detail"]


def test_each_node_answers_for_its_own_ready_endpoints_as_trace_says(tmp_path):
    name = f"hc{secrets.token_hex(3)}"
    with up_cluster(tmp_path, name, APP):
        status, document = asked(name, "192.168.1.12")  # node2 runs web
        assert status == 200 and document == {"service": {"namespace": "default", "name": "weblb"},
                                               "localEndpoints": 2, "serviceProxyHealthy": True}
        assert "answers 200" in traced(name, "192.168.1.12")
        status, document = asked(name, "192.168.1.11")
        assert status == 503 and document["localEndpoints"] == 0
        assert "answers 503" in traced(name, "192.168.1.11")

        (tmp_path / "second.yaml").write_text(SECOND)
        podnet("apply", "-f", str(tmp_path / "second.yaml"), "--name", name)
        deadline = time.monotonic() + 120
        while asked(name, "192.168.1.11")[0] != 200:  # once web2 is ready and kube-proxy has synced
            assert time.monotonic() < deadline, asked(name, "192.168.1.11")
            time.sleep(0.5)
        assert asked(name, "192.168.1.11")[1]["localEndpoints"] == 2
        assert "answers 200" in traced(name, "192.168.1.11")
