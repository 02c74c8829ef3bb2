"""The cluster's kubeconfig and the user's file (podnet.pki.kubeconfig), as kind keeps them."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from podnet.pki import kubeconfig
from podnet.pki.kubeconfig import KubeconfigError, default_path, merge, remove, render

CA, CERT, KEY = b"-----CA-----\n", b"-----CERT-----\n", b"-----KEY-----\n"

# a user's kubeconfig with another cluster in it, and fields podnet knows nothing about
THEIRS = """\
apiVersion: v1
kind: Config
clusters:
- cluster: {server: 'https://10.0.0.1:6443', insecure-skip-tls-verify: true}
  name: prod
contexts:
- context: {cluster: prod, user: ops, namespace: payments}
  name: prod
current-context: prod
preferences: {colors: true}
users:
- name: ops
  user: {token: abc}
extensions:
- name: something
  extension: {x: 1}
"""


def config_for(cluster: str, port: int = 6443) -> dict:
    return render(cluster, f"https://127.0.0.1:{port}", CA, CERT, KEY)


def names(config: dict, section: str) -> list[str]:
    return [entry["name"] for entry in config.get(section) or []]


def read(path) -> dict:
    return yaml.safe_load(path.read_text())


def test_render_is_kinds_shape_with_embedded_credentials():
    config = config_for("demo", 34567)
    assert config["current-context"] == "podnet-demo"
    assert config["clusters"] == [{"cluster": {"certificate-authority-data": base64.b64encode(CA).decode(),
                                               "server": "https://127.0.0.1:34567"}, "name": "podnet-demo"}]
    assert config["contexts"] == [{"context": {"cluster": "podnet-demo", "user": "podnet-demo"},
                                   "name": "podnet-demo"}]
    user = config["users"][0]
    assert user["name"] == "podnet-demo"
    assert base64.b64decode(user["user"]["client-certificate-data"]) == CERT
    assert base64.b64decode(user["user"]["client-key-data"]) == KEY


def test_merge_into_no_file_makes_a_private_one(tmp_path):
    path = tmp_path / "kube" / "config"
    merge(path, config_for("demo"))
    assert read(path) == {**config_for("demo")}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["config"]  # no lock or temporary file left


def test_merge_keeps_everything_else_and_switches_the_context(tmp_path):
    path = tmp_path / "config"
    path.write_text(THEIRS)
    merge(path, config_for("demo"))
    merged, theirs = read(path), yaml.safe_load(THEIRS)
    assert merged["current-context"] == "podnet-demo"
    assert names(merged, "clusters") == ["prod", "podnet-demo"]
    assert names(merged, "contexts") == ["prod", "podnet-demo"]
    assert names(merged, "users") == ["ops", "podnet-demo"]
    assert merged["clusters"][0] == theirs["clusters"][0] and merged["users"][0] == theirs["users"][0]
    assert merged["preferences"] == {"colors": True} and merged["extensions"] == theirs["extensions"]


def test_merge_again_replaces_the_clusters_entries_in_place(tmp_path):
    path = tmp_path / "config"
    path.write_text(THEIRS)
    merge(path, config_for("demo", 1111))
    merge(path, config_for("other", 3333))
    merge(path, config_for("demo", 2222))  # `up` again after `down` lost the file's entry, or a new port
    merged = read(path)
    assert names(merged, "clusters") == ["prod", "podnet-demo", "podnet-other"]
    assert merged["clusters"][1]["cluster"]["server"] == "https://127.0.0.1:2222"
    assert merged["current-context"] == "podnet-demo"


def test_remove_drops_only_that_cluster_and_the_current_context_if_it_was_that(tmp_path):
    path = tmp_path / "config"
    path.write_text(THEIRS)
    merge(path, config_for("demo"))
    merge(path, config_for("other"))
    assert remove(path, "demo") is True  # not current: current-context stays
    after = read(path)
    assert after["current-context"] == "podnet-other"
    assert names(after, "clusters") == ["prod", "podnet-other"]
    assert names(after, "users") == ["ops", "podnet-other"]
    assert remove(path, "other") is True
    after = read(path)
    assert after["current-context"] == ""
    assert after == {**yaml.safe_load(THEIRS), "current-context": ""}


def test_remove_of_what_is_not_there_changes_nothing(tmp_path):
    path = tmp_path / "config"
    assert remove(path, "demo") is False
    assert not path.exists()
    path.write_text(THEIRS)
    before = path.stat().st_mtime_ns
    assert remove(path, "demo") is False
    assert path.read_text() == THEIRS and path.stat().st_mtime_ns == before


def test_remove_does_not_touch_a_cluster_whose_name_starts_alike(tmp_path):
    path = tmp_path / "config"
    merge(path, config_for("a-b"))
    merge(path, config_for("a"))
    remove(path, "a")
    assert names(read(path), "contexts") == ["podnet-a-b"]


@pytest.mark.parametrize("text, message", [
    ("kind: Config\nclusters: [unclosed\n", r"config:3: the kubeconfig is not valid YAML \(expected ',' or ']'"),
    ("- a list\n", "not a mapping"),
    ("clusters: {a: 1}\n", "clusters is not a list"),
])
def test_a_file_podnet_cannot_read_is_left_as_it_is(tmp_path, text, message):
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(KubeconfigError, match=message):
        merge(path, config_for("demo"))
    assert path.read_text() == text


def test_another_writers_lock_is_waited_for_then_named(tmp_path, monkeypatch):
    path = tmp_path / "config"
    (tmp_path / "config.lock").write_text("")
    monkeypatch.setattr(kubeconfig, "LOCK_TIMEOUT", 0.2)
    with pytest.raises(KubeconfigError, match="config.lock exists"):
        merge(path, config_for("demo"))
    assert not path.exists()


def test_a_symlinked_kubeconfig_stays_a_link(tmp_path):
    target = tmp_path / "real-config"
    target.write_text(THEIRS)
    link = tmp_path / "config"
    link.symlink_to(target)
    merge(link, config_for("demo"))
    assert link.is_symlink() and read(target)["current-context"] == "podnet-demo"


@pytest.mark.parametrize("setting, existing, expected", [
    (None, [], "HOME/.kube/config"),
    ("a", [], "a"),
    ("a:b", [], "b"),           # none exists: the last
    ("a:b:c", ["b", "c"], "b"),  # the first that exists
    ("::a", [], "a"),           # empty entries are ignored
])
def test_default_path_follows_client_go(tmp_path, monkeypatch, setting, existing, expected):
    monkeypatch.setenv("HOME", str(tmp_path / "HOME"))
    for name in existing:
        (tmp_path / name).write_text("")
    if setting is None:
        monkeypatch.delenv("KUBECONFIG", raising=False)
    else:
        monkeypatch.setenv("KUBECONFIG", os.pathsep.join(str(tmp_path / p) if p else "" for p in setting.split(":")))
    assert default_path() == tmp_path / expected


def test_the_test_session_never_writes_the_users_kubeconfig():
    """conftest points $KUBECONFIG at a file of the test run's own."""
    assert default_path() != Path.home() / ".kube" / "config"
    assert default_path().parent.name.startswith("podnet-test-kubeconfig-")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")
def test_kubectl_reads_the_merged_file(tmp_path):
    path = tmp_path / "config"
    path.write_text(THEIRS)
    merge(path, config_for("demo", 4321))
    env = {**os.environ, "KUBECONFIG": str(path)}
    current = subprocess.run(["kubectl", "config", "current-context"], capture_output=True, text=True, env=env)
    assert current.stdout.strip() == "podnet-demo", current
    server = subprocess.run(["kubectl", "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"],
                            capture_output=True, text=True, env=env)
    assert server.stdout == "https://127.0.0.1:4321", server
    contexts = subprocess.run(["kubectl", "config", "get-contexts", "-o", "name"], capture_output=True, text=True,
                              env=env)
    assert sorted(contexts.stdout.split()) == ["podnet-demo", "prod"]
