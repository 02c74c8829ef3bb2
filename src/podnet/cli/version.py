"""podnet version: podnet's own version and the Kubernetes version whose behaviour it follows
(the API schemas it validates against, kubelet's and kube-proxy's rules, the nodes' kubeletVersion)."""

from __future__ import annotations

import argparse

from podnet import __version__
from podnet.api.schema import KUBERNETES_VERSION

EXAMPLES = "examples:\n  podnet version\n"


def add_parser(sub) -> None:
    sub.add_parser("version", help="print podnet's version and the Kubernetes version it follows",
                   epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)


def text() -> str:
    return f"podnet {__version__}\nKubernetes version: v{KUBERNETES_VERSION}\n"


def run(args) -> int:
    print(text(), end="")
    return 0
