"""NetworkPolicy in a node's kernel: the desired nftables ruleset of a node (nftables), pure,
rendered from the simulator's compiled policies. The syncer that loads it is in the data plane
(podnet.linux.netpol)."""

from podnet.policy.nftables import (
    BASE_CHAINS,
    BRIDGE_CHAIN,
    BRIDGE_FAMILY,
    FAMILY,
    TABLE,
    Ruleset,
    counter_owner,
    render,
    replace,
    transaction,
)

__all__ = ["BASE_CHAINS", "BRIDGE_CHAIN", "BRIDGE_FAMILY", "FAMILY", "TABLE", "Ruleset", "counter_owner", "render",
           "replace", "transaction"]
