"""Where a cluster lives on the host: namespace names, state directories, interface names.

One place decides every name, so `down` can find all of it again, even after a crash:
everything a cluster creates carries the prefix `podnet-<cluster>.` — cluster names never contain
a dot, so no cluster's prefix is another's (`a` and `a-b` stay apart). Nothing is created in
the host's own network namespace (the sandbox rule): links are born inside the cluster's
namespaces, so interface names only need to be unique within one namespace, and the usual
names (eth0, cni0, flannel.1: semantics/topology) can be used as on a real node.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from podnet.naming import IFNAMSIZ, host_veth_name

PREFIX = "podnet-"
STATE_ROOT = Path("/run/podnet")
NETNS_DIR = Path("/run/netns")
CNI_NETWORK = "podnet"


def _short(text: str, limit: int) -> str:
    """text if it fits, else a prefix and a hash, so different long names never collide."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return text[: limit - 7] + "-" + digest


@dataclass(frozen=True)
class ClusterLayout:
    cluster: str  # the cluster's name (a DNS-1123 label)

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.cluster}."

    @staticmethod
    def cluster_of_netns(name: str) -> str | None:
        """podnet-<cluster>.<kind> → <cluster>"""
        if not name.startswith(PREFIX) or "." not in name:
            return None
        return name[len(PREFIX):].split(".", 1)[0]

    # -- network namespaces (names under /run/netns; no 15-character limit there) -----------
    @property
    def lan_netns(self) -> str:
        return f"{self.prefix}lan"

    @property
    def external_netns(self) -> str:
        return f"{self.prefix}external"

    def node_netns(self, node: str) -> str:
        return f"{self.prefix}node-{node}"

    def pod_netns(self, namespace: str, pod: str) -> str:
        """pod-<ns>.<pod>: a Kubernetes namespace has no dot, so the first one separates them;
        names too long for a file (pod names may have 253 characters) become a hash."""
        name = f"{self.prefix}pod-{namespace}.{pod}"
        if len(name) > 200:
            name = f"{self.prefix}pod-{hashlib.sha256(f'{namespace}/{pod}'.encode()).hexdigest()[:24]}"
        return name

    def owns_netns(self, name: str) -> bool:
        return name.startswith(self.prefix)

    # -- interfaces ------------------------------------------------------------------------
    def lan_port(self, member: str) -> str:
        """The LAN bridge's port towards a node or the external client (in the LAN namespace)."""
        return _short(f"to-{member}", IFNAMSIZ)

    @staticmethod
    def pod_host_veth(namespace: str, pod: str) -> str:
        """The node-side end of a pod's veth, on cni0 (in the node's namespace)."""
        return host_veth_name(namespace, pod)

    # -- files -----------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.cluster

    def ipam_dir(self, node: str) -> Path:
        """host-local's dataDir for one node (one file per reserved address, a lock, the last one)."""
        return self.state_dir / "ipam" / node

    def etc_dirs(self) -> list[Path]:
        """The /etc/netns/<netns> directories of this cluster (ip netns exec binds them over /etc)."""
        root = Path("/etc/netns")
        return [p for p in root.iterdir() if self.owns_netns(p.name)] if root.is_dir() else []

    def ingress_controller_dir(self, namespace: str, pod: str, container: str) -> Path:
        """An ingress controller container's nginx files and its status (podnet.ingressnginx)."""
        return self.state_dir / "ingress-nginx" / f"{namespace}_{pod}_{container}"

    def ingress_controller_dirs(self, namespace: str, pod: str) -> list[Path]:
        """Those of every container of the pod, in name order."""
        return sorted((self.state_dir / "ingress-nginx").glob(f"{namespace}_{pod}_*"))

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "supervisor.sock"

    @property
    def pki_dir(self) -> Path:
        """The cluster CA, the API server's and the admin's certificates, the ServiceAccount key."""
        return self.state_dir / "pki"

    @property
    def apiserver_file(self) -> Path:
        """The API server's record: {"port": its 127.0.0.1 port on the host, "pid", "started"}."""
        return self.state_dir / "apiserver.json"

    def mesh_proxy_dir(self, namespace: str, pod: str) -> Path:
        """The files of a meshed pod's proxy (its Envoy's bootstrap, resources, certificates),
        readable by the proxy's user (mesh/agent.py writes them, mesh/pilot_agent.py runs Envoy on them)."""
        return self.state_dir / "mesh" / f"{namespace}_{pod}"

    @property
    def mesh_endpoints_dir(self) -> Path:
        """Each Service port's endpoints as every proxy reads them (one file per port: a push of
        an endpoint change is one file written, mesh/envoy.py)."""
        return self.state_dir / "mesh" / "endpoints"

    @property
    def mesh_traces_dir(self) -> Path:
        """The meshed pods' spans, one file each (kept after the pod goes, until `down`)."""
        return self.state_dir / "traces"

    def mesh_traces_file(self, namespace: str, pod: str) -> Path:
        return self.mesh_traces_dir / f"{namespace}_{pod}.jsonl"

    def serviceaccount_dir(self, namespace: str, pod: str) -> Path:
        """What a pod sees at /var/run/secrets/kubernetes.io/serviceaccount (token, ca.crt, namespace)."""
        return self.state_dir / "serviceaccounts" / f"{namespace}_{pod}"


_VALID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def valid_cluster_name(name: str) -> bool:
    return bool(_VALID.match(name)) and len(name) <= 40
