"""kind's and kubectl's small habits: `get clusters`, `completion bash|zsh`, `version`, and
what a user who is not root is told (no root needed for these tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from podnet.api.schema import KUBERNETES_VERSION
from podnet.cli import clusters, main
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
SHOP = str(ROOT / "examples" / "shop")


def test_version_prints_the_kubernetes_version_the_nodes_report(capsys):
    code, out, _ = run_cli(capsys, "version")
    assert code == 0
    assert out.splitlines() == ["podnet 0.1.0", f"Kubernetes version: v{KUBERNETES_VERSION}"]
    _, nodes, _ = run_cli(capsys, "get", "nodes", "-o", "json", "-f", SHOP)
    versions = {n["status"]["nodeInfo"]["kubeletVersion"] for n in json.loads(nodes)["items"]}
    assert versions == {f"v{KUBERNETES_VERSION}"}


def test_get_clusters_lists_running_clusters_as_kind_does(capsys, monkeypatch):
    monkeypatch.setattr(clusters, "running_clusters", lambda: ["dev", "podnet"])
    assert run_cli(capsys, "get", "clusters") == (0, "dev\npodnet\n", "")
    monkeypatch.setattr(clusters, "running_clusters", lambda: [])
    assert run_cli(capsys, "get", "clusters") == (0, "", "No podnet clusters found.\n")
    code, _, err = run_cli(capsys, "get", "clusters", "-A")
    assert code == 2 and "unknown argument '-A'" in err
    code, out, _ = run_cli(capsys, "get", "clusters", "--help")
    assert code == 0 and "kind get clusters" in out


def complete(script: str, *words: str) -> list[str]:
    """What bash offers after `podnet WORDS…` (the last word is the one being completed)."""
    line = " ".join(f"'{w}'" for w in ("podnet", *words))
    probe = f'{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words)}; _podnet; printf "%s\\n" "${{COMPREPLY[@]}}"'
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout
    return [w for w in out.splitlines() if w]


def test_bash_completion_offers_commands_flags_and_resource_types(capsys):
    code, script, _ = run_cli(capsys, "completion", "bash")
    assert code == 0 and "complete -o default -F _podnet podnet" in script
    assert complete(script, "ge") == ["get"]
    assert {"up", "down", "trace", "completion", "version"} <= set(complete(script, ""))
    assert {"pods", "po", "pod"} <= set(complete(script, "get", "po"))
    assert "clusters" in complete(script, "get", "c")
    assert "services" in complete(script, "describe", "-n", "shop", "serv")
    assert set(complete(script, "get", "--all")) == {"--all-namespaces"}
    assert complete(script, "completion", "") == ["bash", "zsh"]
    assert "--timeout" in complete(script, "up", "--t")


def test_zsh_completion_runs_the_same_function_through_bashcompinit(capsys):
    _, bash, _ = run_cli(capsys, "completion", "bash")
    code, zsh, _ = run_cli(capsys, "completion", "zsh")
    assert code == 0 and zsh.startswith("#compdef podnet\n") and "bashcompinit" in zsh and zsh.endswith(bash)
    if shutil.which("zsh"):  # registered for podnet, through bash's completion function
        probe = f"autoload -U compinit && compinit -u\n{zsh}\nprint -r -- ${{_comps[podnet]}}"
        registered = subprocess.run(["zsh", "-c", probe], capture_output=True, text=True, check=True).stdout
        assert "-F _podnet" in registered, registered


def test_completion_wants_a_known_shell(capsys):
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, "completion", "fish")
    assert exited.value.code == 2
    assert "invalid choice: 'fish'" in capsys.readouterr().err


@pytest.fixture
def not_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


def test_podnet_without_root_says_which_commands_need_it(capsys, not_root):
    code, out, _ = run_cli(capsys)
    assert code == 2
    assert "You are not root: up, down, exec, logs, apply, delete, wait, probe, node need root" in " ".join(out.split())


@pytest.mark.parametrize("argv", [
    ["up"], ["down"], ["exec", "web", "--", "true"], ["logs", "web"], ["apply", "-f", SHOP], ["delete", "-f", SHOP],
    ["probe"], ["wait", "--for=delete", "pod/web"], ["node", "restart", "node2"],
    ["get", "pods"], ["describe", "pod", "web"], ["trace", "a", "b"], ["dig", "web"], ["matrix"],
    ["get", "clusters"],
], ids=lambda argv: " ".join(argv[:2]))
def test_each_command_the_note_names_does_need_root(capsys, not_root, argv):
    assert argv[0] in main.NEEDS_ROOT + main.RUNNING_CLUSTER
    code, _, err = run_cli(capsys, *argv)
    assert code != 0 and "root" in err, err


def test_the_note_is_not_shown_to_root(capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    _, out, _ = run_cli(capsys)
    assert "You are not root" not in out


def test_podnet_version_as_a_program():
    proc = subprocess.run([sys.executable, "-m", "podnet", "version"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    assert proc.returncode == 0 and proc.stdout.endswith(f"Kubernetes version: v{KUBERNETES_VERSION}\n")
