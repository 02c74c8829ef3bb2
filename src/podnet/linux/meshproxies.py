"""The mesh on a running cluster: istiod's and the istio-cni node agent's part, for each meshed pod.

Before a pod with an injected proxy starts (the injector's work: controlplane/injection.py),
its proxy gets an identity and its first configuration (mesh/agent.py writes them into the
pod's proxy directory, which the proxy container's pilot-agent runs Envoy on) and the pod's
namespace gets the capture table (mesh/interception.py: one `nft -f`, one transaction) — so no
packet of the app passes before the proxy can take it. Each cluster the supervisor publishes
is pushed to every proxy (the files whose content changed: Envoy reloads just those);
certificates are renewed at half their life; a pod that goes takes its files with it.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.host.layout import ClusterLayout
from podnet.host.netns import socket_in_netns
from podnet.mesh import envoy
from podnet.mesh.agent import ProxyAgent
from podnet.mesh import stats
from podnet.mesh.interception import PROXY_GID, interception_of, proxy_uid, ruleset
from podnet.pki.mesh import MeshAuthority
from podnet.semantics import mesh

log = logging.getLogger("podnet.mesh")
SAMPLES_KEPT = 600.0  # seconds of each proxy's counter samples kept for `podnet mesh stat --window`
MESH_POLICY_KINDS = ("PeerAuthentication", "AuthorizationPolicy")


def mesh_policies(cluster: Cluster) -> list[KubeObject]:
    return [obj for kind in MESH_POLICY_KINDS for obj in cluster.of_kind(kind)]


class MeshProxies:
    def __init__(self, layout: ClusterLayout):
        self.layout = layout
        self.authority = MeshAuthority(layout.state_dir / "mesh-ca")
        self.agents: dict[str, ProxyAgent] = {}
        self.samples: dict[str, list[stats.Sample]] = {}  # pod ref → its proxy's counters, as read
        self.endpoints: dict[str, str] = {}  # the endpoints files every proxy reads → their text

    def prepare(self, pod: KubeObject, cluster: Cluster, netns: str | None) -> None:
        """A meshed pod about to start (or adopted from an earlier supervisor): its proxy's
        identity and files, and, in its namespace `netns`, the capture. Nothing for a pod
        without a proxy."""
        if mesh.proxy_container(pod) is None:
            return
        capture = interception_of(pod.metadata.get("annotations"))  # (a bad annotation raises: the pod fails)
        directory = self.layout.mesh_proxy_dir(pod.namespace, pod.name)
        directory.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(directory.parent, 0o755)  # the proxies' user reaches its own directory through it
        directory.mkdir(mode=0o755, exist_ok=True)
        uid = proxy_uid(f"{self.layout.cluster}/{pod.ref}")
        os.chown(directory, uid, PROXY_GID)
        agent = ProxyAgent(self.authority, pod, envoy.ProxyFiles(str(directory)), owner=uid)
        policies = mesh_policies(cluster)
        shared = self._outbound(cluster, policies)
        self._publish(shared)
        agent.start(cluster, policies, shared)
        if netns is not None:
            subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=ruleset(capture), text=True,
                           check=True, capture_output=True, timeout=60)
        self.agents[pod.ref] = agent

    def push(self, cluster: Cluster) -> dict[str, list[str]]:
        """`cluster` to every proxy: per pod, the files that changed (most pushes change none);
        under "*" the endpoints files every proxy reads. An endpoint change is one file written,
        which every proxy watching it reads (istiod's EDS push, as files)."""
        if not self.agents:
            return {}
        policies = mesh_policies(cluster)
        shared = self._outbound(cluster, policies)  # (the same clusters and endpoints for every proxy)
        pushed = {"*": written} if (written := self._publish(shared)) else {}
        failed = False
        for ref, agent in list(self.agents.items()):
            try:
                changed = agent.sync(cluster, policies, shared)
            except Exception:  # one proxy's failure leaves the others current
                log.exception("pushing the configuration of %s's proxy failed", ref)
                failed = True
                continue
            if changed:
                pushed[ref] = changed
        if not failed:  # (a proxy whose push failed may still name an endpoints file no other does)
            self._retire(shared)
        return pushed

    def _outbound(self, cluster: Cluster, policies: list[KubeObject]) -> envoy.Outbound:
        return envoy.outbound(cluster, policies, endpoints_directory=str(self.layout.mesh_endpoints_dir))

    def _publish(self, shared: envoy.Outbound) -> list[str]:
        """The endpoints files whose content changed written (before any clusters file names a
        new one); returns their names."""
        changed = {name: text for name, text in shared.endpoint_files.items() if self.endpoints.get(name) != text}
        if changed:
            self.layout.mesh_endpoints_dir.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            envoy.write_endpoint_files(str(self.layout.mesh_endpoints_dir), changed)
            self.endpoints.update(changed)
        return sorted(changed)

    def _retire(self, shared: envoy.Outbound) -> None:
        """Endpoints files no cluster names any more (every proxy has its new clusters file):
        gone, with any an earlier supervisor left."""
        directory = self.layout.mesh_endpoints_dir
        for name in os.listdir(directory) if directory.is_dir() else ():
            if name not in shared.endpoint_files and not name.startswith("."):
                (directory / name).unlink(missing_ok=True)
                self.endpoints.pop(name, None)

    def renew_due(self) -> list[str]:
        """Certificates past half their life renewed; returns the pods whose were."""
        renewed = []
        for ref, agent in list(self.agents.items()):
            try:
                if agent.renew_if_due():
                    renewed.append(ref)
            except Exception:
                log.exception("renewing the certificate of %s's proxy failed", ref)
        return renewed

    def sample(self, netns_of: dict[str, str], window: float) -> dict[str, tuple[dict, dict]]:
        """Each meshed pod's proxy's counters now (Envoy's admin, inside the pod), and the
        baseline to count from for `window` seconds (mesh/stats.py): ref → (baseline, now) as
        JSON. Proxies that do not answer are left out."""
        refs = [ref for ref in self.agents if ref in netns_of]

        def read(ref: str) -> tuple[str, stats.Sample | None]:
            try:
                return ref, stats.Sample.from_envoy(time.monotonic(), _admin_json(netns_of[ref], stats.STATS_FILTER))
            except (OSError, ValueError, http.client.HTTPException):
                return ref, None

        with ThreadPoolExecutor(max_workers=8) as pool:
            read_now = dict(pool.map(read, refs))
        out = {}
        for ref, now in read_now.items():
            if now is None:
                continue
            history = self.samples.setdefault(ref, [])
            out[ref] = (stats.baseline(history, now, window).to_json(), now.to_json())
            history.append(now)
            history[:] = [s for s in history if now.at - s.at <= SAMPLES_KEPT]
        return out

    def forget(self, namespace: str, name: str) -> None:
        """The pod is gone: its proxy's files too (its namespace took the capture with it)."""
        self.agents.pop(f"{namespace}/{name}", None)
        self.samples.pop(f"{namespace}/{name}", None)
        shutil.rmtree(self.layout.mesh_proxy_dir(namespace, name), ignore_errors=True)


def _admin_json(netns: str, stat_filter: str, timeout: float = 5.0) -> dict:
    """Envoy's counters, from its admin port on the pod's loopback."""
    sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", envoy.ADMIN_PORT))
        query = urllib.parse.urlencode({"format": "json", "histogram_buckets": "cumulative", "filter": stat_filter})
        sock.sendall(f"GET /stats?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        if response.status != 200:
            raise ValueError(f"Envoy's admin answered {response.status}")
        return json.loads(response.read())
    finally:
        sock.close()
