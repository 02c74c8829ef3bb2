"""The kube-proxy of one node: desired state in, one transaction per sync, rate-limited, retried.

`NodeProxy.update(cluster)` may be called as often as the cluster changes; a background thread
syncs at most once per `min_sync_interval` (kube-proxy's minSyncPeriod) with the latest state,
and retries a failed sync with back-off, as kube-proxy's bounded-frequency runner does. The
first sync, and the first after a failure, rewrites everything; the others only the service
ports that changed. A refused sync changes nothing in the kernel (one transaction): the
previous rules stay in force, the error is in `status` and told to `report`. Before its
first sync a proxy removes what the other modes may have left in the node (kube-proxy's
CleanupLeftovers), so switching modes leaves no stale rules.

Rules changed behind the proxy's back are repaired as kube-proxy repairs them: `check()`
(the supervisor calls it every round) asks the kernel whether the mode's fixed chains — the
nftables table's base and helper chains, iptables' KUBE-PROXY-CANARY in mangle, nat and
filter, the userspace table's chains — still hold what the last sync loaded
(podnet.proxy.canary: one netlink round trip while nothing changed), and when not, logs why,
tells `noticed` and syncs everything again. Every FULL_RESYNC_PERIOD it syncs everything
again anyway, as kube-proxy's sync runner does (a change the canary cannot see: a rule
deleted from one Service's chain).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from podnet.controlplane import Cluster
from podnet.proxy import iptables, nftables, nftnl
from podnet.proxy.canary import FULL_RESYNC_PERIOD, Canary, NetlinkRuleCounter, RuleCounter, Watched
from podnet.proxy.healthcheck import HealthCheckServer, listener_in
from podnet.proxy.loader import LoadError, Runner, in_netns, run_command
from podnet.proxy.model import ServicePort, service_ports
from podnet.proxy.userspace import USERSPACE_TABLE, UserspaceProxier

log = logging.getLogger("podnet.proxy")
MODES = ("nftables", "iptables", "userspace")
RETRY_MAX = 5.0  # seconds between retries of a failing sync, at most


class NftablesProxier:
    """Full syncs go to `nft -f`. Incremental ones go to the kernel as one netlink batch
    (nftnl), since nft would spend most of their time reading the table back; that is, when
    the proxier runs the real tools (`netlink`: by default when `run` is run_command)."""

    def __init__(self, netns: str | None, pod_subnet: str, service_subnet: str, run: Runner = run_command,
                 netlink: bool | None = None):
        self.netns, self.pod_subnet, self.service_subnet, self.run = netns, pod_subnet, service_subnet, run
        self.state = nftables.TableState()
        self.cache: dict[ServicePort, nftables.PortRules] = {}
        self.full = True
        self.loader = nftnl.Loader(netns) if (run is run_command if netlink is None else netlink) else None
        self._watched = [Watched(nftables.FAMILY, nftables.TABLE, nftables.fixed_chains(service_subnet))]

    def watched(self) -> list[Watched]:
        """What the kernel holds after any successful sync, whatever the Services (the canary)."""
        return self._watched

    def force_full(self) -> None:
        self.full = True

    def _load(self, text: str, full: bool) -> None:
        if self.loader is not None and not full:
            try:
                return self.loader.load(text)
            except nftnl.Unsupported as exc:
                log.info("nftables sync through nft -f: %s", exc)
        self.run(in_netns(self.netns, ["nft", "-f", "-"]), text)

    def sync(self, ports: list[ServicePort]) -> int:
        text, state, rewritten = nftables.transaction(self.state, ports, self.pod_subnet, self.service_subnet,
                                                      self.full, self.cache)
        if text:
            try:
                self._load(text, self.full)
            except LoadError:
                self.full = True  # the kernel's table is no longer known: rewrite it all next time
                raise
        self.state, self.full = state, False
        self.cache = {sp: rules for sp, rules in state.ports.values()}
        return rewritten

    def cleanup(self) -> None:
        _delete_nft_table(self.run, self.netns, nftables.FAMILY, nftables.TABLE)
        self.state, self.full = nftables.TableState(), True
        self.close()

    def close(self) -> None:
        """Let go of the netlink socket: it holds the node's namespace alive."""
        if self.loader is not None:
            self.loader.close()


class IptablesProxier:
    def __init__(self, netns: str | None, pod_subnet: str, service_subnet: str, run: Runner = run_command):
        self.netns, self.pod_subnet, self.run = netns, pod_subnet, run
        self.state = iptables.TablesState()
        self.cache: dict[ServicePort, iptables.PortRules] = {}
        self.full = True
        self._nf_tables: bool | None = None  # whether iptables is iptables-nft (the canary's netlink sees it)

    def watched(self) -> list[Watched]:
        """kube-proxy's canary chains, one rule each (see podnet.proxy.iptables). Read over
        nf_tables netlink, so only with iptables-nft; legacy iptables is not watched."""
        if self._nf_tables is None:
            try:
                self._nf_tables = "nf_tables" in self.run(in_netns(self.netns, ["iptables", "-V"]))
            except (LoadError, OSError):
                self._nf_tables = False
            if not self._nf_tables:
                log.warning("iptables here is not iptables-nft: kube-proxy's canary chains are not watched")
        if not self._nf_tables:
            return []
        return [Watched("ip", table, ((iptables.CANARY, 1),)) for table in iptables.CANARY_TABLES]

    def force_full(self) -> None:
        self.full = True

    def sync(self, ports: list[ServicePort]) -> int:
        listing = self.run(in_netns(self.netns, ["iptables-save"])) if self.full else ""
        text, state, rewritten = iptables.restore_input(self.state, ports, self.pod_subnet, self.full, self.cache, listing)
        try:
            self.run(in_netns(self.netns, ["iptables-restore", "-w", "--noflush"]), text)
        except LoadError:
            self.full = True
            raise
        self.state, self.full = state, False
        self.cache = {sp: rules for sp, rules in state.ports.values()}
        return rewritten

    def cleanup(self) -> None:
        cleanup_iptables(self.run, self.netns)
        self.state, self.full = iptables.TablesState(), True

    def close(self) -> None:
        """Nothing held between syncs (iptables-restore is a process per sync)."""


def _delete_nft_table(run: Runner, netns: str | None, family: str, table: str) -> None:
    # `add` first makes the delete succeed whether or not the table exists, in one transaction
    run(in_netns(netns, ["nft", "-f", "-"]), f"add table {family} {table}\ndelete table {family} {table}\n")


def cleanup_iptables(run: Runner, netns: str | None) -> None:
    """Remove every KUBE- chain and the jumps to them, in one iptables-restore."""
    try:
        listing = run(in_netns(netns, ["iptables-save"]))
    except (LoadError, OSError):
        return  # no iptables here: nothing of ours either
    lines: list[str] = []
    table, chains, jumps = None, [], []
    for line in listing.splitlines() + ["*end"]:
        if line.startswith("*"):
            if table and (chains or jumps):
                lines += [f"*{table}", *(f":{c} - [0:0]" for c in chains), *jumps, *(f"-X {c}" for c in chains), "COMMIT"]
            table, chains, jumps = line[1:].strip(), [], []
        elif line.startswith(":KUBE-"):
            chains.append(line[1:].split()[0])
        elif line.startswith("-A ") and " -j KUBE-" in line and not line.split()[1].startswith("KUBE-"):
            jumps.append("-D " + line[3:])
    if lines:
        run(in_netns(netns, ["iptables-restore", "-w", "--noflush"]), "\n".join(lines) + "\n")


def cleanup_leftovers(netns: str | None, keep: str | None = None, run: Runner = run_command) -> None:
    """Remove every proxy mode's rules from a node, except those of mode `keep`."""
    if keep != "nftables":
        _delete_nft_table(run, netns, nftables.FAMILY, nftables.TABLE)
    if keep != "iptables":
        cleanup_iptables(run, netns)
    if keep != "userspace":
        _delete_nft_table(run, netns, "ip", USERSPACE_TABLE)


def make_proxier(mode: str, netns: str | None, pod_subnet: str, service_subnet: str, run: Runner = run_command):
    if mode == "nftables":
        return NftablesProxier(netns, pod_subnet, service_subnet, run)
    if mode == "iptables":
        return IptablesProxier(netns, pod_subnet, service_subnet, run)
    if mode == "userspace":
        return UserspaceProxier(netns, run)
    if mode == "ipvs":
        raise ValueError("proxyMode ipvs needs the kernel's IP_VS module, which this machine does not have; "
                         "use nftables, iptables or userspace")
    raise ValueError(f"unknown proxyMode {mode!r}: use one of {', '.join(MODES)}")


@dataclass
class SyncStatus:
    syncs: int = 0
    failures: int = 0
    last_error: str | None = None
    last_duration: float = 0.0
    last_rewritten: int = 0
    synced_at: float = 0.0  # time.monotonic() of the last successful sync


class NodeProxy:
    def __init__(self, cluster_name: str, node: str, netns: str | None, mode: str, pod_subnet: str,
                 service_subnet: str = "10.96.0.0/12", run: Runner = run_command, min_sync_interval: float = 0.1,
                 report: Callable[[str, str | None], None] | None = None,
                 counter: RuleCounter | None = None, noticed: Callable[[str, str], None] | None = None,
                 full_resync_period: float = FULL_RESYNC_PERIOD, health: HealthCheckServer | None = None):
        self.cluster_name, self.node, self.netns, self.mode = cluster_name, node, netns, mode
        # told (node, why) of every refused sync and (node, None) of the first good one after:
        # the supervisor's events and log (kube-proxy reports them in its log and metrics)
        self.report = report
        self.run = run
        self.proxier = make_proxier(mode, netns, pod_subnet, service_subnet, run)
        self.min_sync_interval = min_sync_interval
        self.status = SyncStatus()
        # the canary: reads the node's kernel (netlink when the real tools run; tests give a
        # fake), and `noticed` is told (node, what changed) when it finds the rules changed
        if counter is None and run is run_command:
            counter = NetlinkRuleCounter(netns)
        self.canary = Canary(counter) if counter is not None else None
        self._canary_lock = threading.Lock()  # check() reads with the socket that stop() closes
        self.noticed = noticed
        self.full_resync_period = full_resync_period
        # the healthCheckNodePorts' server (a real one when the real tools run; tests give theirs)
        if health is None and run is run_command and netns is not None:
            health = HealthCheckServer(node, listener_in(netns))
        self.health = health
        self._synced_ports: list[ServicePort] | None = None  # what the last good sync loaded
        self._full_at = 0.0  # time.monotonic() of the last good full sync
        self._pending: list[ServicePort] | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._cleaned = False
        self._busy = False
        # UDP service port -> ((cluster IP, port), its serving endpoints, whether it had endpoints)
        self._udp: dict[tuple[str, str, str], tuple[tuple[str, int], frozenset[str], bool]] = {}

    # -- syncing --------------------------------------------------------------------------------

    def sync_now(self, cluster: Cluster) -> None:
        """Program the node for `cluster` before returning (raises if the loader refuses)."""
        self._sync(service_ports(cluster, self.node))

    def update(self, cluster: Cluster) -> None:
        """Ask for a sync to `cluster`'s state soon; returns at once."""
        self.update_ports(service_ports(cluster, self.node))

    def update_ports(self, ports: list[ServicePort]) -> None:
        with self._wake:
            self._queue(ports)

    def _queue(self, ports: list[ServicePort]) -> None:
        """Under self._wake: `ports` to be synced by the proxy's thread."""
        self._pending = ports
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"proxy:{self.node}", daemon=True)
            self._thread.start()
        self._wake.notify()

    # -- the canary -----------------------------------------------------------------------------

    def check(self) -> str | None:
        """Whether the kernel still holds the mode's fixed chains as the last sync left them;
        if not, a full sync of the same Services is queued and what changed is logged, told to
        `noticed` and returned. Also queues the periodic full resync. Cheap while nothing
        changed (podnet.proxy.canary); does nothing while a sync is pending, running or being
        retried (that sync comes anyway, and a failed one rewrites everything)."""
        if self.canary is None:
            return None
        with self._wake:
            if (self._stopping or self._pending is not None or self._busy or self._synced_ports is None
                    or self.status.last_error is not None):
                return None
            syncs = self.status.syncs
        try:
            with self._canary_lock:
                if self._stopping:
                    return None
                reason = self.canary.check(self.proxier.watched())
        except OSError as exc:  # the kernel could not be asked (the node going away): next round
            log.debug("kube-proxy canary on node %s could not be read: %s", self.node, exc)
            return None
        periodic = reason is None and time.monotonic() - self._full_at >= self.full_resync_period
        if reason is None and not periodic:
            return None
        with self._wake:
            if self._stopping or self.status.syncs != syncs or self._pending is not None or self._busy:
                return None  # a sync ran meanwhile: what was read may be its doing; look again next round
            self.proxier.force_full()
            self._queue(self._synced_ports)
        if reason is None:
            log.info("kube-proxy on node %s: periodic full resync (every %.0f s)", self.node, self.full_resync_period)
            return None
        log.warning("kube-proxy on node %s: %s outside kube-proxy; syncing all rules again", self.node, reason)
        if self.noticed is not None:
            self.noticed(self.node, reason)
        return reason

    def _sync(self, ports: list[ServicePort]) -> None:
        if not self._cleaned:
            cleanup_leftovers(self.netns, keep=self.mode, run=self.run)
            self._cleaned = True
        started = time.monotonic()
        full = getattr(self.proxier, "full", True)  # the userspace proxier always replaces its table
        try:
            rewritten = self.proxier.sync(ports)
        except Exception as exc:
            self.status.failures += 1
            self.status.last_error = str(exc)
            if self.report is not None:
                self.report(self.node, str(exc))
            raise
        self._clear_udp_conntrack(ports)
        self.status.syncs += 1
        if self.status.last_error is not None and self.report is not None:
            self.report(self.node, None)
        self.status.last_error = None
        self.status.last_rewritten = rewritten
        self.status.synced_at = time.monotonic()
        self.status.last_duration = self.status.synced_at - started
        self._synced_ports = ports
        if full:
            self._full_at = self.status.synced_at
        if self.health is not None:  # as kube-proxy's syncProxyRules ends: SyncServices, SyncEndpoints
            self.health.sync(sorted({sp.health_check for sp in ports if sp.health_check is not None},
                                    key=lambda c: c.port))

    def _clear_udp_conntrack(self, ports: list[ServicePort]) -> None:
        """kube-proxy's conntrack cleanup for UDP: a flow to an endpoint that stopped serving
        (gone, or no longer ready nor serving-terminating), or to a frontend that rejected while
        it had no endpoints, would otherwise stick (UDP has no connection to end) and black-hole
        its client until the entry times out. A terminating endpoint that still serves keeps
        its flows, as kube-proxy's stale-entry detection does (it compares `serving`)."""
        udp = {(sp.namespace, sp.name, sp.port_name): ((sp.cluster_ip, sp.port), frozenset(sp.serving_ips),
                                                        bool(sp.cluster_endpoints))
               for sp in ports if sp.protocol == "UDP" and sp.cluster_ip}
        commands = []
        for key, ((vip, port), serving, has_endpoints) in udp.items():
            before = self._udp.get(key)
            if before is None:
                continue
            for gone in sorted(before[1] - serving):
                commands.append(["conntrack", "-D", "-p", "udp", "--orig-dst", vip, "--dport", str(port), "--reply-src", gone])
            if has_endpoints and not before[2]:
                commands.append(["conntrack", "-D", "-p", "udp", "--orig-dst", vip, "--dport", str(port)])
        self._udp = udp
        for argv in commands:
            try:
                self.run(in_netns(self.netns, argv))
            except (LoadError, OSError):  # exit status 1: no such entry, the usual case
                pass

    def _loop(self) -> None:
        delay = self.min_sync_interval
        while True:
            with self._wake:
                while self._pending is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                wait = self.status.synced_at + self.min_sync_interval - time.monotonic()
            if wait > 0:  # rate limit: gather the changes of the meantime into one sync
                time.sleep(wait)
            with self._wake:
                ports, self._pending = self._pending, None
                self._busy = ports is not None
            if ports is None:
                continue
            try:
                self._sync(ports)
                delay = self.min_sync_interval
                with self._wake:
                    self._busy = False
            except Exception as exc:
                log.warning("proxy sync on node %s failed (retrying in %.1fs): %s", self.node, delay, exc)
                with self._wake:
                    self._busy = False
                    if self._pending is None:
                        self._pending = ports
                    self._wake.wait(timeout=delay)
                delay = min(RETRY_MAX, delay * 2)

    @property
    def pending(self) -> bool:
        """Whether a sync is waiting or running: the kernel may still hold older rules."""
        with self._wake:
            return self._pending is not None or self._busy

    def wait_synced(self, timeout: float = 5.0) -> bool:
        """True once nothing is pending (for tests and `apply`'s callers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._wake:
                if self._pending is None and not self._busy:
                    return True
            time.sleep(0.01)
        return False

    def stop(self, cleanup: bool = True) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=nftnl.ANSWER_TIMEOUT + 5)  # a sync waiting on the kernel ends first
        if cleanup or self.mode == "userspace":  # the userspace proxy's listeners must close either way
            self.proxier.cleanup()
        self.proxier.close()
        if self.health is not None:
            self.health.close()  # its listeners hold the node's namespace
        if self.canary is not None:
            with self._canary_lock:
                self.canary.close()  # its socket holds the node's namespace
