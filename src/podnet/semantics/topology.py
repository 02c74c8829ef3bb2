"""The fixed shape of every podnet cluster's network: interface names and overlay parameters.

One copy, here, because the lowest layer that needs them is semantics: the simulator's hops
name the bridge, the overlay device, its VNI and port (semantics/routing), and the data plane
builds exactly those (linux/plan, host/layout, linux/build). What a cluster config may change
(LAN, pod and service networks, the overlay kind) lives in podnet/config.py instead.
"""

from __future__ import annotations

NODE_UPLINK = "eth0"  # a node's (and the external client's) interface on the LAN
POD_IFNAME = "eth0"  # a pod's interface, the inside end of its veth
BRIDGE = "cni0"  # a node's bridge for its pods, holding the gateway of its podCIDR
LAN_BRIDGE = "lan0"  # the LAN: a bridge without an address in the LAN namespace

VXLAN_DEVICE = "flannel.1"  # flannel's name for its VXLAN device
VXLAN_VNI = 1
VXLAN_PORT = 8472  # flannel's (the Linux kernel's IANA default is 4789)
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8

DEFAULT_MTU = 1500  # of the LAN; pods get less with the VXLAN overlay
