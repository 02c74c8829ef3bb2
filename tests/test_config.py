"""The cluster config: defaults from DESIGN.md, and every rejection with its file and line."""

from ipaddress import IPv4Address, IPv4Network

import pytest

from podnet.cli.main import main
from podnet.config import ClusterConfig, parse_config
from podnet.errors import InvalidInput

HEADER = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\n"


def test_defaults_are_the_design_table():
    c = ClusterConfig()
    n = c.networking
    assert [node.name for node in c.nodes] == ["node1", "node2", "node3"]
    assert n.pod_subnet == IPv4Network("10.244.0.0/16") and n.node_cidr_mask_size == 24
    assert n.service_subnet == IPv4Network("10.96.0.0/12") and n.dns_service_ip == IPv4Address("10.96.0.10")
    assert n.node_port_range == (30000, 32767)
    assert n.load_balancer_pool == (IPv4Address("192.168.1.200"), IPv4Address("192.168.1.250"))
    assert n.lan_subnet == IPv4Network("192.168.1.0/24")
    assert (n.overlay, n.proxy_mode, n.dns_domain) == ("vxlan", "nftables", "cluster.local")


def test_node_list_with_names_labels_and_roles():
    c = parse_config(HEADER + "nodes:\n- name: cp\n  role: control-plane\n- name: w1\n  labels: {zone: a}\n")
    assert [(n.name, n.role, dict(n.labels)) for n in c.nodes] == [("cp", "control-plane", {}), ("w1", "worker", {"zone": "a"})]


def rejected(text: str) -> list[str]:
    with pytest.raises(InvalidInput) as info:
        parse_config(HEADER + text, "cluster.yaml")
    return info.value.lines


@pytest.mark.parametrize("text, line, phrase", [
    pytest.param("networking:\n  serviceSubnet: 10.240.0.0/12\n", 4, "overlaps podSubnet", id="service-overlaps-pods"),
    pytest.param("networking:\n  lanSubnet: 10.96.0.0/24\n", 4, "overlaps serviceSubnet", id="lan-overlaps-services"),
    pytest.param("networking:\n  loadBalancerPool: 10.0.0.1-10.0.0.9\n", 4, "not inside lanSubnet", id="pool-outside-lan"),
    pytest.param("networking:\n  dnsServiceIP: 10.200.0.10\n", 4, "outside serviceSubnet", id="dns-ip-outside-services"),
    pytest.param("nodes: 300\n", 3, "do not fit", id="more-nodes-than-pod-cidrs"),
    pytest.param("networking:\n  proxyMode: ipvs\n", 4, "IP_VS", id="ipvs-unavailable-here"),
    pytest.param("networking:\n  overlay: flannel\n", 4, "supported values: vxlan, host-gw", id="unknown-overlay"),
    pytest.param("networking:\n  podSubnett: 10.0.0.0/8\n", 4, "unknown field", id="unknown-key"),
    pytest.param("networking:\n  podSubnet: 10.244.0.1/16\n", 4, "not a valid IPv4 CIDR", id="host-bits-set"),
    pytest.param("networking:\n  nodePortRange: 40000-30000\n", 4, "FIRST-LAST", id="inverted-port-range"),
    pytest.param("nodes:\n- name: a\n- name: a\n", 5, "Duplicate value", id="duplicate-node"),
    pytest.param("name: Big_Name\n", 3, "not a valid cluster name", id="bad-cluster-name"),
    pytest.param("kubelet:\n  crashLoopBackOff:\n    maxContainerRestartPeriod: 10\n", 5, "is not a duration",
                 id="restart-period-without-unit"),
    pytest.param("kubelet:\n  crashLoopBackOff:\n    maxContainerRestartPeriod: 6m\n", 5, "between 1s and 300s",
                 id="restart-period-over-kubelets-300s"),
    pytest.param("kubelet:\n  crashLoopBackOff:\n    maxContainerRestartPeriod: 500ms\n", 5, "between 1s and 300s",
                 id="restart-period-under-1s"),
    pytest.param("kubelet:\n  crashLoopBackoff: {}\n", 4, "unknown field (allowed: crashLoopBackOff)",
                 id="kubelet-unknown-key"),
    pytest.param("kubelet: [crashLoopBackOff]\n", 3, "must be a mapping", id="kubelet-not-a-mapping"),
])
def test_rejections_name_file_line_and_field(text, line, phrase):
    lines = rejected(text)
    assert any(l.startswith(f"cluster.yaml:{line}: Cluster ") and phrase in l for l in lines), lines


@pytest.mark.parametrize("written, seconds, shown", [
    ("10s", 10.0, "10s"), ("1m30s", 90.0, "1m30s"), ("5m", 300.0, "5m0s"), ("1.5s", 1.5, "1.5s"), ("2500ms", 2.5, "2.5s"),
])
def test_kubelet_crash_loop_back_off_takes_kubelets_go_durations(written, seconds, shown):
    config = parse_config(HEADER + f"kubelet: {{crashLoopBackOff: {{maxContainerRestartPeriod: {written}}}}}\n")
    assert config.kubelet.max_container_restart_period == seconds
    view = config.to_dict()["kubelet"]
    assert view == {"crashLoopBackOff": {"maxContainerRestartPeriod": shown}}
    assert parse_config(HEADER + f"kubelet: {view}\n".replace("'", "")).kubelet == config.kubelet  # view reads back


def test_kubelets_default_cap_is_5_minutes():
    assert ClusterConfig().kubelet.max_container_restart_period == 300.0
    assert parse_config(HEADER + "kubelet: {}\n").kubelet == ClusterConfig().kubelet


def test_wrong_kind_is_rejected():
    with pytest.raises(InvalidInput, match='must be "Cluster"'):
        parse_config("kind: Kluster\napiVersion: podnet.dev/v1alpha1\n", "c.yaml")


def test_config_view_prints_effective_config(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(HEADER + "nodes: 2\nnetworking:\n  overlay: host-gw\n")
    assert main(["config", "view", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "overlay: host-gw" in out and "name: node2" in out and "podSubnet: 10.244.0.0/16" in out
