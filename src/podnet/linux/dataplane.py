"""The supervisor's view of the kernel: build the cluster's network, attach and detach pods.

It joins three parts that each stand alone: the network plan and its builder (LAN, nodes,
overlay), the CNI plugin's in-process API (a pod's veth on cni0, its address from host-local),
and teardown. Pods get exactly the address the control plane computed: it is passed to
host-local as the requested IP (CNI_ARGS IP=), as a runtime would for a static address.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.cni import bridge, config
from podnet.controlplane import Cluster
from podnet.host.layout import CNI_NETWORK, ClusterLayout
from podnet.host.netns import NETNS_DIR, create_netns, delete_netns, list_netns
from podnet.linux.build import build
from podnet.linux.plan import plan_network
from podnet.linux.teardown import record_namespace, remove_namespaces, teardown
from podnet.semantics.nodenat import LOOPBACK, HostPort, IpMasq, host_ports
from podnet.semantics.topology import BRIDGE, POD_IFNAME

ETC_NETNS = Path("/etc/netns")
log = logging.getLogger("podnet.dataplane")


@dataclass(frozen=True)
class Attached:
    namespace: str
    name: str
    node: str
    netns: str
    container_id: str
    conf: object  # podnet.cni.config.NetConf
    host_network: bool
    ip: str = ""  # the pod's address, while it holds one


class DataPlane:
    real = True  # the kernel's; a test's fake has no proxies, prober or announcer behind it

    def __init__(self, layout: ClusterLayout, cluster: Cluster):
        self.layout = layout
        self.cluster = cluster
        self.plan = None
        self.attached: dict[str, Attached] = {}
        self.host_ports: dict[str, tuple[str, list[HostPort]]] = {}  # pod → (node, its mappings)

    def build(self) -> None:
        self.plan = plan_network(self.cluster)
        build(self.plan)
        for node in self.cluster.nodes:
            self._nft(node.name, node_nat_ruleset(IpMasq.for_pod_subnet(self.cluster.config.networking.pod_subnet)))
            subprocess.run(["ip", "netns", "exec", self.layout.node_netns(node.name), "sysctl", "-q", "-w",
                            "net.ipv4.conf.all.route_localnet=1"], check=True, capture_output=True)

    def adopt_network(self) -> None:
        """A restarted supervisor: the network stands (it outlived the old one); only the plan
        is needed again, for the pods' MTU and the nodes."""
        self.plan = plan_network(self.cluster)

    def adopt(self, pod: KubeObject, netns: str) -> None:
        """A pod whose network stands, taken over by a restarted supervisor: what detach needs
        to undo it later, and its hostPorts in the node's portmap table (synced again)."""
        node = self.cluster.node(pod.spec.get("nodeName"))
        container_id = pod.metadata.get("uid") or f"{pod.namespace}_{pod.name}"
        if pod.spec.get("hostNetwork"):
            self.attached[pod.ref] = Attached(pod.namespace, pod.name, node.name, netns, container_id, None, True)
            return
        self.attached[pod.ref] = Attached(pod.namespace, pod.name, node.name, netns, container_id,
                                          self._conf(node, pod), False, fields.pod_ip(pod))
        self.map_host_ports(pod)

    def collect_garbage(self) -> list[str]:
        """After adopting: what a dead supervisor made but did not record (it died between
        starting a pod and writing its record) goes — the namespaces of pods not adopted, with
        their processes, and then every node's host-local reservations that no adopted pod
        holds (CNI GC), so the pods started again find their addresses free. The namespaces removed."""
        adopted = {attached.netns for attached in self.attached.values()}
        orphans = [name for name in list_netns() if name.startswith(f"{self.layout.prefix}pod-") and name not in adopted]
        if orphans:
            remove_namespaces(orphans)
            for name in orphans:
                shutil.rmtree(ETC_NETNS / name, ignore_errors=True)
        for node in self.cluster.nodes:
            valid = tuple((a.container_id, POD_IFNAME) for a in self.attached.values()
                          if a.node == node.name and not a.host_network)
            released = bridge.gc(self._conf(node, None), valid_attachments=valid)
            if released:
                log.warning("node %s: released the addresses %s, which no adopted pod holds", node.name,
                            ", ".join(str(a) for a in released))
        return orphans

    def _pod_mtu(self, node: str) -> int:
        return next(n.pod_mtu for n in self.plan.nodes if n.name == node)

    def _conf(self, node, pod: KubeObject | None):
        """The node's CNI config; with the pod's arguments (its address) for one pod."""
        cni_args = None if pod is None else \
            {"IP": fields.pod_ip(pod), "K8S_POD_NAMESPACE": pod.namespace, "K8S_POD_NAME": pod.name}
        return config.from_dict({
            "cniVersion": "1.0.0", "name": CNI_NETWORK, "type": "podnet-cni", "bridge": BRIDGE,
            "isGateway": True, "ipMasq": False, "hairpinMode": True, "mtu": self._pod_mtu(node.name),
            "ipam": {"type": "host-local",
                     "ranges": [[{"subnet": str(node.pod_cidr), "gateway": str(node.gateway)}]],
                     "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": str(self.layout.ipam_dir(node.name))},
        }, cni_args=cni_args)

    def attach(self, pod: KubeObject) -> str:
        """Give the pod its network; returns the network namespace its processes run in."""
        node = self.cluster.node(pod.spec.get("nodeName"))
        container_id = pod.metadata.get("uid") or f"{pod.namespace}_{pod.name}"
        if pod.spec.get("hostNetwork"):
            netns = self.layout.node_netns(node.name)
            self.attached[pod.ref] = Attached(pod.namespace, pod.name, node.name, netns, container_id, None, True)
            return netns
        netns = self.layout.pod_netns(pod.namespace, pod.name)
        record_namespace(self.layout.cluster, netns)  # before creating it: a crash leaves a record
        create_netns(netns)
        try:
            subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
            conf = self._conf(node, pod)
            bridge.add(conf, container_id, str(NETNS_DIR / netns), POD_IFNAME, node_netns=self.layout.node_netns(node.name),
                       args={"K8S_POD_NAMESPACE": pod.namespace, "K8S_POD_NAME": pod.name})
        except BaseException:
            delete_netns(netns)
            raise
        self.attached[pod.ref] = Attached(pod.namespace, pod.name, node.name, netns, container_id, conf, False,
                                          fields.pod_ip(pod))
        self.map_host_ports(pod)
        return netns

    def map_host_ports(self, pod: KubeObject) -> None:
        """Add the pod's hostPort mappings (if it has any) to its node's portmap table."""
        mappings = host_ports(pod)
        if mappings:
            node = pod.spec.get("nodeName")
            self.host_ports[pod.ref] = (node, mappings)
            self.sync_host_ports(node)

    def detach(self, namespace: str, name: str) -> None:
        """CNI DEL (the address goes back to host-local), then the namespace."""
        attached = self.attached.pop(f"{namespace}/{name}", None)
        if attached is None or attached.host_network:
            return
        if self.host_ports.pop(f"{namespace}/{name}", None):
            self.sync_host_ports(attached.node)
        try:
            bridge.delete(attached.conf, attached.container_id, str(NETNS_DIR / attached.netns), POD_IFNAME,
                          node_netns=self.layout.node_netns(attached.node))
        finally:
            delete_netns(attached.netns)
            if attached.ip:
                self.forget_connections(attached.ip)

    def forget_connections(self, ip: str) -> None:
        """Every node's conntrack entries from or to an address that left, as Calico's Felix
        removes them: the NetworkPolicy tables accept established flows first, and a new pod
        given the address must not ride the old one's."""
        for node in self.plan.nodes:
            netns = self.layout.node_netns(node.name)
            for direction in ("--src", "--dst"):  # exit 1: nothing to delete
                subprocess.run(["ip", "netns", "exec", netns, "conntrack", "-D", direction, ip],
                               capture_output=True, check=False)

    def sync_host_ports(self, node: str) -> None:
        """CNI portmap, for every hostPort pod of the node, in one nft transaction in the node's
        namespace: DNAT from any of the node's addresses (or the hostIP asked for) to the pod,
        for packets arriving and for the node's own; masquerade a pod reaching its own hostPort."""
        self._nft(node, portmap_ruleset([m for _, (n, mappings) in sorted(self.host_ports.items()) if n == node
                                         for m in mappings]))

    def _nft(self, node: str, ruleset: str) -> None:
        """One `nft -f` transaction in the node's namespace: all of it applies, or none."""
        result = subprocess.run(["ip", "netns", "exec", self.layout.node_netns(node), "nft", "-f", "-"],
                                input=ruleset, text=True, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"nft on node {node}: {result.stderr.strip()}")

    def teardown(self) -> None:
        teardown(self.layout.cluster)


PORTMAP_TABLE = "podnet-portmap"


def portmap_ruleset(mappings: list[HostPort]) -> str:
    """The node's whole portmap table (semantics/nodenat's mappings, first match wins):
    replaced at once, so it is never half-written."""
    lines = [f"table ip {PORTMAP_TABLE}", f"delete table ip {PORTMAP_TABLE}", f"table ip {PORTMAP_TABLE} {{",
             "  chain hostports {"]
    for m in mappings:
        match = f"ip daddr {m.host_ip} " if m.host_ip else ""
        lines.append(f"    {match}{m.protocol.lower()} dport {m.host_port} dnat to {m.pod_ip}:{m.container_port}")
    lines += [
        "  }",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump hostports",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    fib daddr type local jump hostports",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    # nodenat.portmap_masquerade: a pod reaching its own hostPort, and the node's loopback
    for pod_ip in sorted({m.pod_ip for m in mappings}):
        lines.append(f"    ip saddr {pod_ip} ip daddr {pod_ip} masquerade")
    if mappings:
        lines.append(f"    ip saddr {LOOPBACK} ip daddr != {LOOPBACK} masquerade")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


NAT_TABLE = "podnet-nat"


def node_nat_ruleset(masq: IpMasq) -> str:
    """flannel's ip-masq (semantics/nodenat, the rule the simulator's trace follows): pod traffic
    leaving the pod network is masqueraded to the node; traffic between pods keeps its addresses."""
    exempt = " ".join(f"ip daddr != {net}" for net in masq.exempt)
    return "\n".join([
        f"table ip {NAT_TABLE}", f"delete table ip {NAT_TABLE}", f"table ip {NAT_TABLE} {{",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat + 10; policy accept;",
        f"    ip saddr {masq.source} {exempt} masquerade",
        "  }", "}", ""])
