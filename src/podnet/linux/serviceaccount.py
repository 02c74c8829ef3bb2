"""kubelet's projected ServiceAccount volume: what a pod finds at
/var/run/secrets/kubernetes.io/serviceaccount — `token` (a bound token, podnet.pki.tokens),
`ca.crt` (the cluster CA, to check the API server) and `namespace`.

The files live on the host in layout.serviceaccount_dir(ns, pod) (directory 0755, files 0644,
under a 0700 directory only root reaches), each replaced atomically (a reader sees the old token
or the new, never part of one), and the directory is bound read-only into the pod's own mount
namespace — the one `ip netns exec` gives the sandbox (its mounts are private to it: ip makes
the namespace's mounts slaves of the host's, so nothing propagates back). A refreshed token
shows through the bind at once, as kubelet's atomic writer makes it appear.

Where it is mounted: /var/run is /run, and /run/secrets does not exist on most hosts. Inside
the sandbox a small tmpfs goes over /run/secrets (hiding whatever the host keeps there from the
pod), and the token directory is bound at kubernetes.io/serviceaccount in it; the host's mounts
never change. A mount needs a directory to cover: if the host has no /run/secrets, podnet makes
that one empty directory (mode 0755) and notes that it did (MADE_MARKER); the teardown of the
last cluster removes it again. That empty directory is the only thing the host sees; with /run
a tmpfs (systemd hosts) it would go at the next boot anyway. Removing it while another cluster's
pods use it would detach their mounts, so only the last cluster's teardown does.

Tokens last 3607 s (what kubelet asks for) and are rewritten once 80% of that has passed,
kubelet's rule (TokenManager.requiresRefresh), from the supervisor's loop (`refresh`). A
restarted supervisor does not know when the tokens it finds were issued: it rewrites them all
on its first look.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from podnet.api.objects import KubeObject, deterministic_uid
from podnet.controlplane import Cluster
from podnet.host.layout import STATE_ROOT, ClusterLayout
from podnet.kubelet import mounts_service_account_token, service_account_name
from podnet.pki.authority import ClusterCredentials
from podnet.pki.files import atomic_write
from podnet.pki.tokens import LIFETIME, issue_token

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
SECRETS = Path("/run/secrets")  # /var/run/secrets, through the /var/run -> /run link
MADE_MARKER = ".made-run-secrets"  # in STATE_ROOT: podnet made SECRETS (so the last teardown removes it)
REFRESH_AFTER = 0.8  # of the token's lifetime (kubelet's TokenManager)
CHECK_INTERVAL = 5.0  # seconds between the loop's looks at the tokens' ages
FILES = ("token", "ca.crt", "namespace")


def mount_script(source: str, secrets: Path = SECRETS) -> str:
    """Shell commands, run inside the sandbox's own mount namespace, that show the directory
    `source` (a quoted shell word) read-only at MOUNT_PATH."""
    target = secrets / "kubernetes.io" / "serviceaccount"
    return (f"mount -t tmpfs -o mode=0755,size=64k,nosuid,nodev,noexec podnet-secrets {secrets} && "
            f"mkdir -p {target} && mount --bind -o ro {source} {target}")


def ensure_mountpoint(secrets: Path = SECRETS, state_root: Path = STATE_ROOT) -> None:
    """The directory the sandboxes' tmpfs covers: made (empty, 0755) if the host has none,
    noting that podnet made it."""
    if secrets.is_dir():
        return
    if secrets.exists() or secrets.is_symlink():
        raise RuntimeError(f"{secrets} exists and is not a directory: pods cannot get their ServiceAccount "
                           f"token at {MOUNT_PATH}")
    state_root.mkdir(parents=True, exist_ok=True)
    (state_root / MADE_MARKER).touch()  # first: a crash between the two leaves a note, not an orphan
    try:
        secrets.mkdir(mode=0o755)
    except FileExistsError:  # another cluster's runtime, a moment ago
        pass


def release_mountpoint(clusters_left: list[str], secrets: Path = SECRETS, state_root: Path = STATE_ROOT) -> bool:
    """After a teardown: remove the directory podnet made once no cluster is left (and it is
    still empty). Whether it was removed."""
    marker = state_root / MADE_MARKER
    if clusters_left or not marker.exists():
        return False
    try:
        secrets.rmdir()
    except FileNotFoundError:
        pass
    except OSError:  # something else put files there since: it is theirs now
        marker.unlink(missing_ok=True)
        return False
    marker.unlink(missing_ok=True)
    return True


def remove_files(layout: ClusterLayout, namespace: str, pod: str) -> None:
    """The pod's ServiceAccount files, when the pod goes."""
    shutil.rmtree(layout.serviceaccount_dir(namespace, pod), ignore_errors=True)


def has_token(layout: ClusterLayout, namespace: str, pod: str) -> bool:
    return (layout.serviceaccount_dir(namespace, pod) / "token").is_file()


class ServiceAccountTokens:
    """kubelet's token manager for the pods of one cluster."""

    def __init__(self, layout: ClusterLayout, credentials: ClusterCredentials, clock=time.time):
        self.layout = layout
        self.key = credentials.sa_key_path.read_bytes()
        self.ca = credentials.ca_path.read_bytes()
        self.clock = clock
        self.refresh_at: dict[str, float] = {}  # pod ref -> when its token is due again (clock time)
        self._next_check = 0.0

    def write(self, pod: KubeObject, cluster: Cluster) -> Path | None:
        """The pod's token, ca.crt and namespace, if it mounts them (else none, and None)."""
        account_name = service_account_name(pod)
        account = cluster.get("ServiceAccount", pod.namespace, account_name)
        if not mounts_service_account_token(pod, account):
            remove_files(self.layout, pod.namespace, pod.name)
            self.refresh_at.pop(pod.ref, None)
            return None
        directory = self.layout.serviceaccount_dir(pod.namespace, pod.name)
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(directory.parent, 0o700)  # the tokens are for their pods' eyes (and root's) only
        directory.mkdir(exist_ok=True)
        os.chmod(directory, 0o755)
        atomic_write(directory / "ca.crt", self.ca, 0o644)
        atomic_write(directory / "namespace", pod.namespace.encode(), 0o644)
        self._write_token(directory, pod, cluster, account_name, account)
        return directory

    def _write_token(self, directory: Path, pod: KubeObject, cluster: Cluster, account_name: str,
                     account: KubeObject | None) -> None:
        now = self.clock()
        node_name = pod.spec.get("nodeName") or None
        node = cluster.get("Node", "", node_name) if node_name else None
        token = issue_token(
            self.key, namespace=pod.namespace, service_account=account_name,
            service_account_uid=(account.metadata.get("uid") if account is not None else None)
            or deterministic_uid("ServiceAccount", pod.namespace, account_name),
            pod_name=pod.name, pod_uid=pod.metadata.get("uid") or deterministic_uid("Pod", pod.namespace, pod.name),
            node_name=node_name,
            node_uid=((node.metadata.get("uid") if node is not None else None)
                      or (deterministic_uid("Node", "", node_name) if node_name else None)),
            lifetime=LIFETIME, now=now)
        atomic_write(directory / "token", token.encode(), 0o644)
        self.refresh_at[pod.ref] = now + REFRESH_AFTER * LIFETIME

    def refresh(self, pods: Mapping[str, KubeObject], cluster: Cluster) -> list[str]:
        """Rewrite the tokens past 80% of their life (and, after a restart, those whose age is
        unknown), looking every CHECK_INTERVAL; `pods`: ref -> pod, the running ones. The refs
        whose tokens were rewritten."""
        now = self.clock()
        if now < self._next_check:
            return []
        self._next_check = now + CHECK_INTERVAL
        for ref in [ref for ref in self.refresh_at if ref not in pods]:
            del self.refresh_at[ref]
        rewritten = []
        for ref, pod in pods.items():
            due = self.refresh_at.get(ref)
            if due is None:  # adopted from a dead supervisor: its age is unknown
                if not has_token(self.layout, pod.namespace, pod.name):
                    self.refresh_at[ref] = float("inf")  # it mounts none
                    continue
                due = now
            if now >= due:
                account_name = service_account_name(pod)
                directory = self.layout.serviceaccount_dir(pod.namespace, pod.name)
                self._write_token(directory, pod, cluster, account_name,
                                  cluster.get("ServiceAccount", pod.namespace, account_name))
                rewritten.append(ref)
        return rewritten

    def forget(self, ref: str) -> None:
        self.refresh_at.pop(ref, None)
