"""`podnet kubeconfig`, and the context `up` merges and `down` removes (podnet.cli.kubeconfig),
on a cluster's files made in a temporary state root (no cluster runs)."""

from __future__ import annotations

import base64
import json
import os

import pytest
import yaml

from podnet.cli import kubeconfig as cli_kubeconfig
from podnet.cli import lifecycle
from podnet.host import layout as layout_module
from podnet.host.layout import ClusterLayout
from podnet.pki.authority import ClusterCredentials
from podnet.pki.kubeconfig import default_path, merge, render
from tests.conftest import run_cli


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """Cluster `demo`'s state directory with its credentials, as its supervisor leaves them;
    root as far as the command's check goes."""
    monkeypatch.setattr(layout_module, "STATE_ROOT", tmp_path / "state")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    layout = ClusterLayout("demo")
    layout.state_dir.mkdir(parents=True)
    ClusterCredentials(layout.pki_dir).ensure(["127.0.0.1"], ["localhost"])
    return layout


def record_port(layout: ClusterLayout, port: int) -> None:
    layout.apiserver_file.write_text(json.dumps({"port": port, "pid": 1}))


def test_kubeconfig_prints_the_clusters_admin_kubeconfig(cluster, capsys):
    record_port(cluster, 40123)
    code, out, err = run_cli(capsys, "kubeconfig", "--name", "demo")
    assert code == 0, err
    config = yaml.safe_load(out)
    assert config["current-context"] == "podnet-demo"
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:40123"
    credentials = ClusterCredentials(cluster.pki_dir)
    assert base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]) == \
        credentials.ca_path.read_bytes()
    assert base64.b64decode(config["users"][0]["user"]["client-key-data"]) == credentials.admin_key_path.read_bytes()


def test_kubeconfig_before_the_api_server_recorded_its_port(cluster, capsys):
    code, out, err = run_cli(capsys, "kubeconfig", "--name", "demo")
    assert code != 0 and out == ""
    assert "cluster demo has no API server yet" in err and "apiserver.json" in err


def test_kubeconfig_of_no_cluster(cluster, capsys):
    code, out, err = run_cli(capsys, "kubeconfig", "--name", "absent")
    assert code != 0 and err == "no cluster named absent (start one with `podnet up`)\n"


def test_kubeconfig_needs_root(cluster, capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, _, err = run_cli(capsys, "kubeconfig", "--name", "demo")
    assert code != 0 and "needs root" in err


def test_up_merges_the_context_and_says_so(cluster, capsys):
    record_port(cluster, 40123)
    cli_kubeconfig.merge_context(cluster)
    assert capsys.readouterr().out == 'Set kubectl context to "podnet-demo"\n'
    config = yaml.safe_load(default_path().read_text())
    assert config["current-context"] == "podnet-demo"
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:40123"


def test_up_before_the_api_server_records_its_port_merges_nothing(cluster, capsys):
    cli_kubeconfig.merge_context(cluster)
    assert capsys.readouterr() == ("", "")
    assert not default_path().exists()


@pytest.mark.parametrize("content", ["{not json", json.dumps({"port": "x"}), json.dumps({"pid": 3})])
def test_an_unfinished_record_counts_as_none(cluster, capsys, content):
    cluster.apiserver_file.write_text(content)
    cli_kubeconfig.merge_context(cluster)
    assert capsys.readouterr() == ("", "")


def test_an_unwritable_kubeconfig_is_a_warning_not_a_failure(cluster, capsys):
    record_port(cluster, 40123)
    default_path().parent.mkdir(parents=True)
    default_path().write_text("- not a kubeconfig\n")
    cli_kubeconfig.merge_context(cluster)
    out, err = capsys.readouterr()
    assert out == "" and "warning: kubectl's context was not set" in err and "not a mapping" in err


def test_down_removes_the_context_and_keeps_the_rest(cluster, monkeypatch):
    merge(default_path(), render("other", "https://127.0.0.1:1", b"ca", b"cert", b"key"))
    record_port(cluster, 40123)
    cli_kubeconfig.merge_context(cluster)
    monkeypatch.setattr(lifecycle.teardown, "teardown", lambda name: None)  # nothing runs to tear down
    lifecycle._down("demo")
    config = yaml.safe_load(default_path().read_text())
    assert [c["name"] for c in config["contexts"]] == ["podnet-other"]
    assert config["current-context"] == ""
    assert not cluster.state_dir.exists()
