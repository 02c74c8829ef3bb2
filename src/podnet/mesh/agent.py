"""What istio-agent does beside each proxy: keep its identity and its configuration current.

One ProxyAgent per meshed pod: it has the pod's certificate issued (pki/mesh.py) and renewed
once half of its life is gone, and it renders the proxy's configuration (mesh/envoy.py) from
each cluster the control plane computes, writing only the files whose content changed — a
change to one Service's endpoints rewrites that Service port's endpoints file (EDS), and
Envoy, watching each file apart, updates just those hosts. The supervisor holds the agents (its pods' proxies); the data-plane
test drives them as it does.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.mesh import envoy
from podnet.pki.mesh import MeshAuthority, Svid
from podnet.semantics import mesh


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class ProxyAgent:
    def __init__(self, authority: MeshAuthority, pod: KubeObject, files: envoy.ProxyFiles, owner: int | None = None,
                 clock: Callable[[], datetime.datetime] = _utc_now):
        self.authority, self.pod, self.files, self.owner, self.clock = authority, pod, files, owner, clock
        self.identity: Svid | None = None
        self._written: dict[str, str] = {}  # file -> the JSON it holds
        self._listeners: tuple[str, str] | None = None  # (what they were made of, lds.json's text)

    @property
    def spiffe_id(self) -> str:
        return mesh.spiffe_id(self.pod.namespace, mesh.service_account_of(self.pod))

    def start(self, cluster: Cluster, policies: Iterable[KubeObject], shared: envoy.Outbound | None = None) -> None:
        """The proxy's first files: its identity, the mesh's root, its configuration, its bootstrap.
        `shared`: as for sync (its endpoints files, if shared, are in place already)."""
        Path(self.files.directory).mkdir(mode=0o755, parents=True, exist_ok=True)
        self.identity = self.authority.issue(self.spiffe_id, now=self.clock())
        rendered = {**self._render(cluster, policies, shared),
                    "bootstrap.json": json.dumps(envoy.bootstrap(self.pod, self.files), sort_keys=True)}
        envoy.write_files(self.files, rendered, self.identity, self.authority.root_pem, self.owner)
        self._written = dict(rendered)

    def sync(self, cluster: Cluster, policies: Iterable[KubeObject], shared: envoy.Outbound | None = None) -> list[str]:
        """The configuration for `cluster`: the files whose content changed written (a push);
        returns their names. `shared`: envoy.outbound(cluster, policies), made once for every proxy.
        Endpoints' files no cluster names any more go once the clusters file no longer names them."""
        current = cluster.get("Pod", self.pod.namespace, self.pod.name)
        if current is not None and current.status.get("podIP") == self.pod.status.get("podIP"):
            self.pod = current  # (its labels may have changed: the policies selecting it with them)
        rendered = self._render(cluster, policies, shared)
        changed = {name: text for name, text in rendered.items() if self._written.get(name) != text}
        if changed:
            envoy.write_files(self.files, changed, owner=self.owner)
            self._written.update(changed)
        for name in [name for name in self._written if name not in rendered and envoy.is_endpoints_file(name)]:
            Path(self.files.path(name)).unlink(missing_ok=True)
            del self._written[name]
        return sorted(changed)

    def _render(self, cluster: Cluster, policies: Iterable[KubeObject],
                shared: envoy.Outbound | None = None) -> dict[str, str]:
        """The configuration files' text; the listeners made again only when what they are made
        of changed (an endpoint change, the most frequent push, leaves them as they are)."""
        policies = list(policies)
        shared = shared or envoy.outbound(cluster, policies)
        inputs = shared.listener_inputs + json.dumps([self.pod.labels, self.pod.metadata.get("annotations")], sort_keys=True)
        if self._listeners is None or self._listeners[0] != inputs:
            self._listeners = (inputs, envoy.listeners_text(cluster, self.pod, self.files, policies, shared))
        return envoy.resources_text(cluster, self.pod, self.files, policies, shared, listeners=self._listeners[1])

    def renew_if_due(self) -> bool:
        """A new certificate once half of the current one's life is gone (istio-agent's
        SECRET_GRACE_PERIOD_RATIO): put in place before the old one expires."""
        if self.identity is not None and not self.identity.renewal_due(self.clock()):
            return False
        self.renew()
        return True

    def renew(self) -> Svid:
        """A new certificate now, in use by the proxy without a restart (envoy.write_files)."""
        self.identity = self.authority.issue(self.spiffe_id, now=self.clock())
        envoy.write_files(self.files, {}, self.identity, owner=self.owner)
        return self.identity
