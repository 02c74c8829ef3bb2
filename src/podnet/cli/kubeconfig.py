"""podnet kubeconfig: the running cluster's kubeconfig, as `kind get kubeconfig` prints it; and
the context `up` merges into the user's kubeconfig and `down` removes (podnet.pki.kubeconfig).

The server is https://127.0.0.1:<port>, the port the API server recorded in apiserver.json
(as kind maps the control plane's 6443 to a host port); the user is the cluster's admin
(client certificate, system:masters).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.request

from podnet.errors import PodnetError
from podnet.host.control import pick_cluster
from podnet.host.layout import ClusterLayout
from podnet.pki import kubeconfig
from podnet.pki.authority import ClusterCredentials

API_WAIT = 60.0  # seconds `up` waits for the API server once the cluster is built

EXAMPLES = """examples:
  sudo podnet kubeconfig > podnet.kubeconfig     # the running cluster's
  sudo podnet kubeconfig --name demo
  kubectl --kubeconfig podnet.kubeconfig get pods -A

`podnet up` merges the same context (podnet-NAME) into $KUBECONFIG or ~/.kube/config and makes
it current; `podnet down` removes it.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("kubeconfig", help="print the running cluster's kubeconfig (root)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", help="cluster name (default: the running cluster)")


def api_server_port(layout: ClusterLayout) -> int | None:
    """The API server's port on 127.0.0.1, as it recorded it; None while it has not (yet)."""
    try:
        port = json.loads(layout.apiserver_file.read_text()).get("port")
    except (OSError, ValueError, AttributeError):
        return None
    return port if isinstance(port, int) and 0 < port < 65536 else None


def cluster_kubeconfig(layout: ClusterLayout) -> dict | None:
    """The cluster's kubeconfig, or None if its API server has not recorded its port."""
    port = api_server_port(layout)
    if port is None:
        return None
    credentials = ClusterCredentials(layout.pki_dir)
    try:
        return kubeconfig.render(layout.cluster, f"https://127.0.0.1:{port}", credentials.ca_path.read_bytes(),
                                 credentials.admin_cert_path.read_bytes(), credentials.admin_key_path.read_bytes())
    except OSError as error:
        raise PodnetError(f"cluster {layout.cluster}: cannot read its credentials in {layout.pki_dir}: "
                          f"{error.strerror}") from None


def api_server_answers(layout: ClusterLayout) -> bool:
    """Whether the cluster's API server answers /readyz to its admin (TLS, client certificate)."""
    port = api_server_port(layout)
    if port is None:
        return False
    credentials = ClusterCredentials(layout.pki_dir)
    try:
        context = ssl.create_default_context(cafile=str(credentials.ca_path))
        context.load_cert_chain(credentials.admin_cert_path, credentials.admin_key_path)
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=context, timeout=5) as answer:
            return answer.status == 200
    except (OSError, ssl.SSLError, ValueError):
        return False


def wait_for_api_server(layout: ClusterLayout, timeout: float = API_WAIT) -> bool:
    """Until the API server answers (it starts once the cluster is built), at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while not api_server_answers(layout):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def context_after_up(layout: ClusterLayout) -> None:
    """`up`: once the API server answers, kubectl's context (merge_context); a warning if it
    does not answer in time (the cluster is up all the same)."""
    if not wait_for_api_server(layout):
        print(f"warning: the cluster's API server did not answer within {API_WAIT:.0f}s: kubectl's context was not "
              f"set (see {layout.state_dir / 'logs' / 'apiserver.log'})", file=sys.stderr)
        return
    merge_context(layout)


def merge_context(layout: ClusterLayout) -> None:
    """After `up`: merge the cluster's context into the user's kubeconfig and make it current,
    saying so as kind does. Nothing while the API server has not recorded its port; a
    kubeconfig that cannot be written is a warning (the cluster is up all the same)."""
    try:
        config = cluster_kubeconfig(layout)
        if config is None:
            return
        kubeconfig.merge(kubeconfig.default_path(), config)
    except (PodnetError, kubeconfig.KubeconfigError) as error:
        print(f"warning: kubectl's context was not set: {error}", file=sys.stderr)
        return
    print(f'Set kubectl context to "{kubeconfig.context_name(layout.cluster)}"')


def remove_context(cluster: str) -> None:
    """After `down`: the cluster's context leaves the user's kubeconfig (a warning if it cannot)."""
    try:
        kubeconfig.remove(kubeconfig.default_path(), cluster)
    except kubeconfig.KubeconfigError as error:
        print(f"warning: kubectl's context podnet-{cluster} was not removed: {error}", file=sys.stderr)


def run(args) -> int:
    if os.geteuid() != 0:
        raise PodnetError("podnet kubeconfig reads the cluster's credentials (root's own files) and needs root")
    layout = pick_cluster(args.name)
    if not layout.state_dir.is_dir():
        raise PodnetError(f"no cluster named {layout.cluster} (start one with `podnet up`)")
    config = cluster_kubeconfig(layout)
    if config is None:
        raise PodnetError(f"cluster {layout.cluster} has no API server yet ({layout.apiserver_file} does not say "
                          "its port): it starts with the cluster; try again in a moment")
    sys.stdout.write(kubeconfig.dump(config))
    return 0
