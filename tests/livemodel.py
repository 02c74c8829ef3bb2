"""The upstream NetworkPolicy e2e model with servers that answer, for tests on a running cluster.

tests/netpol_cases.py's model_yaml describes the pods for the simulator (containers without
args); a real cluster needs processes that listen. Upstream (test/e2e/network/netpol/model.go)
runs one container per port and protocol, `agnhost serve-hostname --tcp|--udp --http=false
--port P`, and `agnhost porter` for SCTP. Here one container per port serves TCP and UDP
together (serve-hostname allows both at once: half the processes on a 2-core machine), with the
same port names; SCTP is left out, since no process can open an SCTP socket in this kernel.
"""

from __future__ import annotations

from tests.netpol_cases import NAMESPACES, POD_NAMES, PORTS

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"


def serving_model_yaml(namespaces=NAMESPACES, pods=POD_NAMES, ports=PORTS) -> str:
    docs = []
    for ns in namespaces:
        docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}\n")
        for pod in pods:
            containers = "".join(
                f"  - name: cont-{port}\n    image: {AGNHOST}\n"
                f"    args: [serve-hostname, --tcp, --udp, --http=false, --port, '{port}']\n"
                f"    ports: [{{name: serve-{port}-tcp, containerPort: {port}}}, "
                f"{{name: serve-{port}-udp, containerPort: {port}, protocol: UDP}}]\n"
                for port in ports)
            docs.append(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {ns}, labels: {{pod: {pod}}}}}\n"
                        f"spec:\n  containers:\n{containers}")
    return "---\n".join(docs)
