"""MeshProxies' push (the supervisor's): the endpoints files, the same for every proxy, written
once in the cluster's mesh directory, each proxy's clusters naming them; an endpoint change is
that one file; a file no cluster names any more goes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from podnet.host.layout import ClusterLayout
from podnet.linux.meshproxies import MeshProxies
from tests.conftest import cluster_of
from tests.test_mesh_envoy import MANIFESTS

pytestmark = pytest.mark.root  # (the proxies' files are given to their uids)


@dataclass(frozen=True)
class Layout(ClusterLayout):
    root: Path = Path(".")

    @property
    def state_dir(self) -> Path:
        return self.root


def meshed_pods(cluster):
    return [p for p in cluster.of_kind("Pod", "shop") if p.labels.get("app") == "api"]


def test_an_endpoint_change_is_one_file_every_proxy_reads(tmp_path):
    cluster = cluster_of(MANIFESTS.replace("replicas: 1", "replicas: 2"))
    proxies = MeshProxies(Layout(cluster="t", root=tmp_path))
    for pod in meshed_pods(cluster):
        proxies.prepare(pod, cluster, None)
    shared = proxies.layout.mesh_endpoints_dir
    legacy = next(n for n in proxies.endpoints if "__legacy.shop." in n)
    for agent in proxies.agents.values():
        clusters = json.loads(Path(agent.files.path("cds.json")).read_text())["resources"]
        named = {c["eds_cluster_config"]["eds_config"]["path_config_source"]["path"] for c in clusters if c["type"] == "EDS"}
        assert named == {str(shared / n) for n in proxies.endpoints}  # every proxy reads the same files
        assert not Path(agent.files.path("eds")).exists()
    # legacy's second pod not ready (kubelet's word): one file, and no proxy's own file, changes
    second = sorted(p.name for p in cluster.of_kind("Pod", "shop") if p.labels.get("app") == "legacy")[1]
    flipped = cluster_of(MANIFESTS.replace("replicas: 1", "replicas: 2"))
    for slice_ in flipped.of_kind("EndpointSlice", "shop"):
        for endpoint in slice_.body.get("endpoints") or []:
            if (endpoint.get("targetRef") or {}).get("name") == second:
                endpoint["conditions"]["ready"] = False
    assert proxies.push(flipped) == {"*": [legacy]}
    [assignment] = json.loads((shared / legacy).read_text())["resources"]
    assert len(assignment["endpoints"][0]["lb_endpoints"]) == 1
    # the Service gone: its file goes once every proxy's clusters no longer name it
    gone = cluster_of(MANIFESTS.replace("replicas: 1", "replicas: 2").replace("name: legacy, namespace: shop}\nspec: {selector",
                                                                              "name: other, namespace: shop}\nspec: {selector"))
    pushed = proxies.push(gone)
    assert not (shared / legacy).exists() and set(pushed) == {"*", *proxies.agents}
