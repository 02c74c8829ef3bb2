"""Pods' ServiceAccount credentials (kubelet's projected volume): which pods get them, what the
files hold, when tokens are refreshed, and the host directory the mounts need
(podnet.kubelet's rules, podnet.linux.serviceaccount's files; the mounts themselves are
tests/test_serviceaccount_root.py's)."""

from __future__ import annotations

import stat
import time

import pytest
import yaml
from cryptography import x509

from podnet.api.objects import KubeObject, deterministic_uid
from podnet.controlplane.system import apiserver_certificate_sans
from podnet.config import ClusterConfig
from podnet.host import layout as layout_module
from podnet.host.layout import ClusterLayout
from podnet.kubelet import mounts_service_account_token, service_account_name
from podnet.linux import serviceaccount
from podnet.linux.serviceaccount import ServiceAccountTokens, ensure_mountpoint, release_mountpoint
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.loop import step
from podnet.linux.supervisor.state import ClusterState
from podnet.pki.authority import ClusterCredentials
from podnet.pki.tokens import verify_token
from tests.conftest import cluster_of
from tests.supervisor_fakes import FakeDataPlane, FakeRuntime

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: shop}
spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: robot, namespace: shop}
spec: {serviceAccountName: builder, containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: sealed, namespace: shop}
spec: {automountServiceAccountToken: false, containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet, namespace: kube-system}
spec: {hostNetwork: true, containers: [{name: c, image: busybox}]}
"""


def pod(spec: dict) -> KubeObject:
    return KubeObject("Pod", "ns", "p", {"apiVersion": "v1", "kind": "Pod",
                                         "metadata": {"name": "p", "namespace": "ns"}, "spec": spec})


def account(automount) -> KubeObject | None:
    if automount == "no object":
        return None
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "ns"}}
    if automount is not None:
        body["automountServiceAccountToken"] = automount
    return KubeObject("ServiceAccount", "ns", "default", body)


@pytest.mark.parametrize("on_pod, on_account, mounted", [
    (None, "no object", True),  # the default: every pod, hostNetwork ones too
    (None, None, True),
    (None, False, False),       # the ServiceAccount says no
    (None, True, True),
    (True, False, True),        # the pod's word wins over its ServiceAccount's
    (False, True, False),
    (False, "no object", False),
])
def test_which_pods_mount_the_token(on_pod, on_account, mounted):
    spec = {"containers": []} if on_pod is None else {"automountServiceAccountToken": on_pod, "containers": []}
    assert mounts_service_account_token(pod(spec), account(on_account)) is mounted


@pytest.mark.parametrize("spec, name", [
    ({}, "default"),
    ({"serviceAccountName": "builder"}, "builder"),
    ({"serviceAccount": "legacy"}, "legacy"),  # the deprecated field, still honoured
    ({"serviceAccountName": "new", "serviceAccount": "legacy"}, "new"),
])
def test_the_pods_service_account(spec, name):
    assert service_account_name(pod(spec)) == name


def test_the_api_servers_certificate_names():
    ips, names = apiserver_certificate_sans(ClusterConfig(), "node1", "192.168.1.11")
    assert ips == ["127.0.0.1", "192.168.1.11", "10.96.0.1"]
    assert names == ["localhost", "node1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                     "kubernetes.default.svc.cluster.local"]


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """(layout, credentials, tokens, cluster, clock) of cluster `demo` in a temporary state root."""
    monkeypatch.setattr(layout_module, "STATE_ROOT", tmp_path / "state")
    layout = ClusterLayout("demo")
    credentials = ClusterCredentials(layout.pki_dir)
    credentials.ensure(["127.0.0.1"], ["localhost"])
    clock = Clock()
    cluster = cluster_of(PODS)
    return layout, credentials, ServiceAccountTokens(layout, credentials, clock=clock), cluster, clock


def identity(setup, namespace: str, name: str):
    layout, credentials, _, _, clock = setup
    token = (layout.serviceaccount_dir(namespace, name) / "token").read_bytes().decode()
    return verify_token(credentials.sa_pub_path.read_bytes(), token, now=clock.now)


def test_a_pod_gets_token_ca_and_namespace(setup):
    layout, credentials, tokens, cluster, _ = setup
    plain = cluster.get("Pod", "shop", "plain")
    directory = tokens.write(plain, cluster)
    assert directory == layout.serviceaccount_dir("shop", "plain")
    assert sorted(p.name for p in directory.iterdir()) == ["ca.crt", "namespace", "token"]
    assert (directory / "ca.crt").read_bytes() == credentials.ca_path.read_bytes()
    assert (directory / "namespace").read_text() == "shop"  # no newline, as kubelet writes it
    who = identity(setup, "shop", "plain")
    assert who.username == "system:serviceaccount:shop:default"
    assert (who.pod_name, who.pod_uid) == ("plain", plain.metadata["uid"])
    assert who.service_account_uid == deterministic_uid("ServiceAccount", "shop", "default")
    assert who.node_name == plain.spec["nodeName"]
    assert who.expires - setup[4].now == 3607
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert stat.S_IMODE(directory.parent.stat().st_mode) == 0o700
    assert {stat.S_IMODE((directory / f).stat().st_mode) for f in ("token", "ca.crt", "namespace")} == {0o644}


def test_the_named_service_account_and_its_uid(setup):
    _, _, tokens, cluster, _ = setup
    cluster.objects[("ServiceAccount", "shop", "builder")] = KubeObject("ServiceAccount", "shop", "builder", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder", "namespace": "shop",
                                                                   "uid": "0b1f-builder"}})
    tokens.write(cluster.get("Pod", "shop", "robot"), cluster)
    who = identity(setup, "shop", "robot")
    assert (who.service_account, who.service_account_uid) == ("builder", "0b1f-builder")


def test_host_network_pods_get_theirs_too(setup):
    _, _, tokens, cluster, _ = setup
    assert tokens.write(cluster.get("Pod", "kube-system", "hostnet"), cluster) is not None
    assert identity(setup, "kube-system", "hostnet").pod_name == "hostnet"


def test_no_files_for_a_pod_that_mounts_none(setup):
    layout, _, tokens, cluster, _ = setup
    assert tokens.write(cluster.get("Pod", "shop", "sealed"), cluster) is None
    assert not layout.serviceaccount_dir("shop", "sealed").exists()
    assert not serviceaccount.has_token(layout, "shop", "sealed")


def test_a_service_account_that_says_no(setup):
    layout, _, tokens, cluster, _ = setup
    cluster.objects[("ServiceAccount", "shop", "default")] = KubeObject("ServiceAccount", "shop", "default", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "shop"},
        "automountServiceAccountToken": False})
    assert tokens.write(cluster.get("Pod", "shop", "plain"), cluster) is None
    assert not layout.serviceaccount_dir("shop", "plain").exists()


def test_tokens_are_rewritten_at_80_percent_of_their_life(setup):
    layout, _, tokens, cluster, clock = setup
    plain = cluster.get("Pod", "shop", "plain")
    tokens.write(plain, cluster)
    first = (layout.serviceaccount_dir("shop", "plain") / "token").read_bytes()
    running = {plain.ref: plain}
    clock.now += 0.8 * 3607 - 10
    assert tokens.refresh(running, cluster) == []
    clock.now += 20  # past 2885.6 s: due
    assert tokens.refresh(running, cluster) == ["shop/plain"]
    second = (layout.serviceaccount_dir("shop", "plain") / "token").read_bytes()
    assert second != first
    assert identity(setup, "shop", "plain").expires == int(clock.now) + 3607
    clock.now += 60
    assert tokens.refresh(running, cluster) == []  # fresh again


def test_a_restarted_supervisor_rewrites_the_tokens_it_finds_at_once(setup):
    """It cannot know their age; pods without a token stay without."""
    layout, credentials, tokens, cluster, clock = setup
    plain, sealed = cluster.get("Pod", "shop", "plain"), cluster.get("Pod", "shop", "sealed")
    tokens.write(plain, cluster)
    tokens.write(sealed, cluster)
    successor = ServiceAccountTokens(layout, credentials, clock=clock)
    clock.now += 1
    assert successor.refresh({plain.ref: plain, sealed.ref: sealed}, cluster) == ["shop/plain"]
    assert not layout.serviceaccount_dir("shop", "sealed").exists()


def test_the_checks_are_spaced(setup):
    layout, _, tokens, cluster, clock = setup
    plain = cluster.get("Pod", "shop", "plain")
    tokens.write(plain, cluster)
    clock.now += 3000
    assert tokens.refresh({}, cluster) == []  # a look: shop/plain is not running, so forgotten
    assert tokens.refresh({plain.ref: plain}, cluster) == []  # the next look is CHECK_INTERVAL away
    assert "shop/plain" not in tokens.refresh_at


def test_the_files_go_with_the_pod(setup):
    layout, _, tokens, cluster, _ = setup
    tokens.write(cluster.get("Pod", "shop", "plain"), cluster)
    serviceaccount.remove_files(layout, "shop", "plain")
    assert not layout.serviceaccount_dir("shop", "plain").exists()


def test_the_mountpoint_is_made_once_and_removed_by_the_last_cluster(tmp_path):
    secrets, state = tmp_path / "run" / "secrets", tmp_path / "state"
    secrets.parent.mkdir()
    ensure_mountpoint(secrets, state)
    assert secrets.is_dir() and stat.S_IMODE(secrets.stat().st_mode) == 0o755
    ensure_mountpoint(secrets, state)  # again: nothing new
    assert release_mountpoint(["other"], secrets, state) is False and secrets.is_dir()
    assert release_mountpoint([], secrets, state) is True
    assert not secrets.exists() and not (state / serviceaccount.MADE_MARKER).exists()


def test_a_hosts_own_secrets_directory_is_never_removed(tmp_path):
    secrets, state = tmp_path / "secrets", tmp_path / "state"
    secrets.mkdir()
    (secrets / "theirs").write_text("x")
    ensure_mountpoint(secrets, state)
    assert release_mountpoint([], secrets, state) is False
    assert (secrets / "theirs").exists()


def test_one_made_by_podnet_that_others_filled_since_is_left_to_them(tmp_path):
    secrets, state = tmp_path / "secrets", tmp_path / "state"
    ensure_mountpoint(secrets, state)
    (secrets / "theirs").write_text("x")
    assert release_mountpoint([], secrets, state) is False
    assert (secrets / "theirs").exists() and not (state / serviceaccount.MADE_MARKER).exists()


def test_a_file_where_the_directory_should_be_is_a_clear_error(tmp_path):
    (tmp_path / "secrets").write_text("")
    with pytest.raises(RuntimeError, match="is not a directory"):
        ensure_mountpoint(tmp_path / "secrets", tmp_path / "state")


class TokenRuntime(FakeRuntime):
    """The fake runtime with kubelet's token manager, as the real one has it."""

    tokens = None

    def start_pod(self, pod, netns):
        assert self.tokens is not None, "a pod started before the cluster's credentials were made"
        self.tokens.write(pod, self.cluster)
        return super().start_pod(pod, netns)


def test_the_supervisor_makes_the_credentials_first_and_refreshes_tokens_from_its_loop(tmp_path, monkeypatch):
    monkeypatch.setattr(layout_module, "STATE_ROOT", tmp_path / "run")
    layout = ClusterLayout("sup")
    state = ClusterState(layout, tmp_path / "sup")
    state.create({"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "sup", "nodes": 2},
                 [yaml.safe_load(PODS.split("---")[0])])
    supervisor = Supervisor(layout, state, dataplane_factory=FakeDataPlane, runtime_factory=TokenRuntime)
    supervisor.start()
    server = x509.load_pem_x509_certificate((layout.pki_dir / "apiserver.crt").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(map(str, sans.get_values_for_type(x509.IPAddress))) == ["10.96.0.1", "127.0.0.1", "192.168.1.11"]
    assert "kubernetes.default.svc.cluster.local" in sans.get_values_for_type(x509.DNSName)
    refs = sorted(supervisor.runtime.pods)
    assert "shop/plain" in refs and all(serviceaccount.has_token(layout, *ref.split("/")) for ref in refs)

    clock = Clock(time.time() + 0.8 * 3607 + 1)  # past 80% of every token's life
    supervisor.tokens.clock = clock
    token = layout.serviceaccount_dir("shop", "plain") / "token"
    before = token.read_bytes()
    step(supervisor)
    assert token.read_bytes() != before
    public = (layout.pki_dir / "sa.pub").read_bytes()
    assert verify_token(public, token.read_text(), now=clock.now).expires == int(clock.now) + 3607
