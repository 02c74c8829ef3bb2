"""Pods' ServiceAccount credentials in a real cluster (root only): a pod reads its token, ca.crt
and namespace at /var/run/secrets/kubernetes.io/serviceaccount, read-only; the token verifies
with the cluster's sa.pub and names the pod; a pod with automountServiceAccountToken: false has
none; the host's mounts never change; a restarted supervisor renews the tokens; a deleted
pod's files go; after `down` nothing is left (and its kubectl context is gone)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from podnet.host.control import send
from podnet.host.layout import STATE_ROOT, ClusterLayout
from podnet.linux.serviceaccount import MADE_MARKER, SECRETS
from podnet.pki import kubeconfig
from podnet.pki.tokens import verify_token
from tests.livecluster import AGNHOST, podnet, up_cluster

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

PODS = f"""
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: sealed}}
spec:
  automountServiceAccountToken: false
  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]
"""

HOSTNET = f"""
apiVersion: v1
kind: Pod
metadata: {{name: hostnet, namespace: kube-system}}
spec:
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  serviceAccountName: robot
  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]
"""


def host_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def in_pod(name: str, cluster: str, *argv: str, namespace: str = "default", check: bool = True):
    return podnet("exec", name, "-n", namespace, "--name", cluster, "--", *argv, check=check)


def test_pods_read_their_service_account_credentials(tmp_path):
    name = f"sa{secrets.token_hex(3)}"
    layout = ClusterLayout(name)
    mounts_before = host_mounts()
    (tmp_path / "hostnet.yaml").write_text(HOSTNET)
    with up_cluster(tmp_path, name, PODS + "---\n" + HOSTNET, nodes=1):
        public = (layout.pki_dir / "sa.pub").read_bytes()

        token = in_pod("reader", name, "cat", f"{MOUNT}/token").stdout
        who = verify_token(public, token)
        assert who.username == "system:serviceaccount:default:default"
        assert who.pod_name == "reader" and who.pod_uid
        assert in_pod("reader", name, "cat", f"{MOUNT}/namespace").stdout == "default"
        assert in_pod("reader", name, "cat", f"{MOUNT}/ca.crt").stdout == (layout.pki_dir / "ca.crt").read_text()

        refused = in_pod("reader", name, "sh", "-c", f"echo x > {MOUNT}/token", check=False)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr + refused.stdout
        assert verify_token(public, in_pod("reader", name, "cat", f"{MOUNT}/token").stdout).pod_name == "reader"

        # the official Python client's in-cluster configuration finds all it needs
        script = ("from kubernetes import client, config; config.load_incluster_config(); "
                  "c = client.Configuration.get_default_copy(); "
                  "print(c.host, c.ssl_ca_cert, c.api_key['BearerToken'][:12])")
        loaded = in_pod("reader", name, sys.executable, "-c", script).stdout.split()
        assert loaded == ["https://10.96.0.1:443", f"{MOUNT}/ca.crt", "bearer", token[:5]], loaded

        env = in_pod("reader", name, "env").stdout.splitlines()
        assert {"KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
                "KUBERNETES_SERVICE_PORT_HTTPS=443", "KUBERNETES_PORT=tcp://10.96.0.1:443"} <= set(env)

        none = in_pod("sealed", name, "ls", MOUNT, check=False)
        assert none.returncode != 0, none.stdout
        assert not layout.serviceaccount_dir("default", "sealed").exists()

        who = verify_token(public, in_pod("hostnet", name, "cat", f"{MOUNT}/token", namespace="kube-system").stdout)
        assert (who.username, who.pod_name) == ("system:serviceaccount:kube-system:robot", "hostnet")
        resolv = in_pod("hostnet", name, "cat", "/etc/resolv.conf", namespace="kube-system").stdout
        assert "nameserver 10.96.0.10" in resolv  # its own resolv.conf bound beside the token

        # the host: no new mount, and the directory the pods' tmpfs covers holds nothing
        assert host_mounts().count("/run/secrets") == mounts_before.count("/run/secrets")
        assert SECRETS.is_dir() and list(SECRETS.iterdir()) == []

        # a supervisor SIGKILLed and restarted by its watchdog cannot know the tokens' age: it
        # rewrites them at once; the pods see the new one through their mount, the CA stays
        token_file = layout.serviceaccount_dir("default", "reader") / "token"
        ca = (layout.pki_dir / "ca.crt").read_bytes()
        os.kill(send(layout.socket_path, {"op": "ping"}, timeout=10)["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while token_file.read_text() == token and time.monotonic() < deadline:
            time.sleep(0.2)
        renewed = in_pod("reader", name, "cat", f"{MOUNT}/token").stdout
        assert renewed != token and verify_token(public, renewed).pod_name == "reader"
        assert (layout.pki_dir / "ca.crt").read_bytes() == ca

        podnet("delete", "-f", str(tmp_path / "hostnet.yaml"), "--name", name)
        deadline = time.monotonic() + 60
        while layout.serviceaccount_dir("kube-system", "hostnet").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not layout.serviceaccount_dir("kube-system", "hostnet").exists()
        assert layout.serviceaccount_dir("default", "reader").exists()

        # `podnet kubeconfig`: the port the API server recorded (apiserver.json); the context
        # merged as `up` merges it goes with `down`
        port = json.loads(layout.apiserver_file.read_text())["port"]
        config = yaml.safe_load(podnet("kubeconfig", "--name", name).stdout)
        assert config["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{port}"
        assert base64.b64decode(config["users"][0]["user"]["client-certificate-data"]) == \
            (layout.pki_dir / "admin.crt").read_bytes()
        kubeconfig.merge(kubeconfig.default_path(), config)
    assert kubeconfig.context_name(name) not in kubeconfig.default_path().read_text()
    # up_cluster checked that no namespace, file or state directory of it is left
    assert host_mounts().count("/run/secrets") == mounts_before.count("/run/secrets")
    assert name not in host_mounts()
    others = [p for p in STATE_ROOT.iterdir() if p.is_dir()] if STATE_ROOT.is_dir() else []
    if not others:  # the last cluster: the empty directory podnet made (if it did) is gone too
        assert not (STATE_ROOT / MADE_MARKER).exists()
