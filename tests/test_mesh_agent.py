"""The proxy agent (mesh/agent.py): a pod's identity issued and renewed at half-life, its
configuration rendered from each cluster and pushed only as far as it changed."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from cryptography import x509

from podnet.mesh import envoy
from podnet.mesh.agent import ProxyAgent
from podnet.pki.mesh import MeshAuthority
from tests.conftest import cluster_of
from tests.test_mesh_envoy import MANIFESTS


def api_pod(cluster):
    return next(p for p in cluster.of_kind("Pod", "shop") if p.labels.get("app") == "api")


def policies_of(cluster):
    return [o for o in cluster.objects.values() if o.kind in ("AuthorizationPolicy", "PeerAuthentication")]


LEGACY = "eds/outbound_80__legacy.shop.svc.cluster.local."


def test_an_endpoint_change_rewrites_that_services_endpoints_file_alone(tmp_path):
    cluster = cluster_of(MANIFESTS)
    files = envoy.ProxyFiles(str(tmp_path / "proxy"))
    agent = ProxyAgent(MeshAuthority(tmp_path / "ca"), api_pod(cluster), files)
    agent.start(cluster, policies_of(cluster))
    names = {str(p.relative_to(tmp_path / "proxy")) for p in (tmp_path / "proxy").rglob("*.json")}
    # each watched file in a directory of its own: a push of one makes Envoy reread that one alone;
    # each Service port's endpoints in a file of their own (Envoy watches each file apart)
    assert {n for n in names if not n.startswith("eds/")} == {
        "bootstrap.json", "lds/lds.json", "cds/cds.json", "secrets/sds-cert.json", "secrets/sds-root.json"}
    assert len([n for n in names if n.startswith("eds/")]) == 5
    assert agent.sync(cluster, policies_of(cluster)) == []  # nothing changed: nothing written
    scaled = cluster_of(MANIFESTS.replace("replicas: 1", "replicas: 3"))  # legacy: more endpoints
    before = {name: Path(files.path(name)).stat().st_mtime_ns for name in ("lds.json", "cds.json")}
    [pushed] = agent.sync(scaled, policies_of(scaled))
    assert pushed.startswith(LEGACY)
    assert {name: Path(files.path(name)).stat().st_mtime_ns for name in before} == before
    [assignment] = json.loads(Path(files.path(pushed)).read_text())["resources"]
    assert len(assignment["endpoints"][0]["lb_endpoints"]) == 3


def test_a_cluster_made_anew_reads_a_new_endpoints_file_written_before_it(tmp_path):
    # legacy's pods get proxies: its cluster now speaks mTLS to every endpoint (another transport
    # socket, a cluster made anew), and names a new endpoints file, in place before the clusters file
    cluster = cluster_of(MANIFESTS)
    files = envoy.ProxyFiles(str(tmp_path / "proxy"))
    agent = ProxyAgent(MeshAuthority(tmp_path / "ca"), api_pod(cluster), files)
    agent.start(cluster, policies_of(cluster))
    [old] = [n for n in agent._written if n.startswith(LEGACY)]
    meshed = cluster_of(MANIFESTS.replace('sidecar.istio.io/inject: "false"', "security.istio.io/tlsMode: istio"))
    written = []
    real = envoy.os.replace
    try:
        envoy.os.replace = lambda source, target: (written.append(str(target)), real(source, target))
        pushed = agent.sync(meshed, policies_of(meshed))
    finally:
        envoy.os.replace = real
    [new] = [n for n in pushed if n.startswith(LEGACY)]
    assert new != old and "cds.json" in pushed
    assert written.index(files.path(new)) < written.index(files.path("cds.json"))
    assert not Path(files.path(old)).exists() and Path(files.path(new)).exists()
    legacy = next(c for c in json.loads(Path(files.path("cds.json")).read_text())["resources"]
                  if c["name"] == "outbound|80||legacy.shop.svc.cluster.local")
    assert legacy["eds_cluster_config"]["eds_config"]["path_config_source"]["path"] == files.path(new)
    assert legacy["transport_socket"]["name"] == "envoy.transport_sockets.tls"


def test_the_certificate_is_renewed_at_half_its_life(tmp_path):
    now = [datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.timezone.utc)]
    cluster = cluster_of(MANIFESTS)
    agent = ProxyAgent(MeshAuthority(tmp_path / "ca"), api_pod(cluster), envoy.ProxyFiles(str(tmp_path / "proxy")),
                       clock=lambda: now[0])
    agent.start(cluster, policies_of(cluster))
    first = agent.identity
    now[0] += datetime.timedelta(hours=11, minutes=58)  # (its life began 2 minutes back: the backdate)
    assert not agent.renew_if_due() and agent.identity is first
    now[0] += datetime.timedelta(minutes=2)
    assert agent.renew_if_due() and agent.identity is not first
    named = json.loads(Path(agent.files.path(envoy.SECRET_FILES["default"])).read_text())["resources"][0]
    served = x509.load_pem_x509_certificate(open(named["tls_certificate"]["certificate_chain"]["filename"], "rb").read())
    assert served.not_valid_after_utc == now[0] + datetime.timedelta(hours=24)  # the new one is what the proxy reads
    assert served.not_valid_after_utc > first.not_after


def test_a_running_pod_relabelled_gets_the_policies_its_new_labels_select(tmp_path):
    cluster = cluster_of(MANIFESTS)
    files = envoy.ProxyFiles(str(tmp_path / "proxy"))
    agent = ProxyAgent(MeshAuthority(tmp_path / "ca"), api_pod(cluster), files)
    agent.start(cluster, policies_of(cluster))
    assert "api-readers" in Path(files.path("lds.json")).read_text()
    relabelled = cluster_of(MANIFESTS)
    pod = api_pod(relabelled)
    pod.metadata_for_update()["labels"] = {**pod.labels, "app": "renamed"}  # (kubectl label --overwrite)
    assert agent.sync(relabelled, policies_of(relabelled)) == ["lds.json"]
    assert "api-readers" not in Path(files.path("lds.json")).read_text()  # its selector no longer matches


AGED = MANIFESTS.replace('sidecar.istio.io/inject: "false"', "security.istio.io/tlsMode: istio") + """
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: first, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: second, namespace: shop, creationTimestamp: "2026-01-02T00:00:00Z"}
spec: {mtls: {mode: PERMISSIVE}}
"""


def test_a_policy_made_again_is_younger_and_the_listeners_follow(tmp_path):
    """Of two namespace PeerAuthentications the oldest decides: `first` deleted and applied again
    (the same spec, a new age) hands the namespace to `second`, and the proxy's listeners follow."""
    def plaintext_taken(text: str) -> bool:
        [inbound] = [l for l in json.loads(text)["resources"] if l["name"] == "virtualInbound"]
        return any(c["filter_chain_match"].get("transport_protocol") == "raw_buffer"
                   for c in inbound["filter_chains"] if "destination_port" not in c["filter_chain_match"])

    cluster = cluster_of(AGED)
    legacy = next(p for p in cluster.of_kind("Pod", "shop") if p.labels.get("app") == "legacy")
    files = envoy.ProxyFiles(str(tmp_path / "proxy"))
    agent = ProxyAgent(MeshAuthority(tmp_path / "ca"), legacy, files)
    agent.start(cluster, policies_of(cluster))
    assert not plaintext_taken(Path(files.path("lds.json")).read_text())  # first: STRICT
    again = cluster_of(AGED.replace("2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"))
    assert "lds.json" in agent.sync(again, policies_of(again))
    assert plaintext_taken(Path(files.path("lds.json")).read_text())  # second: PERMISSIVE
