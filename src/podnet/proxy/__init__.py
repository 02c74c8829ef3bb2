"""kube-proxy for podnet's nodes: a pure desired state (model), three renderers (nftables,
iptables, userspace) and the per-node runner that syncs them (node)."""

from podnet.proxy.node import MODES, NodeProxy, cleanup_leftovers

__all__ = ["MODES", "NodeProxy", "cleanup_leftovers"]
