"""Helpers for tests that drive a real cluster through the `podnet` command (root tests)."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path


def podnet(*argv, check=True, timeout=90):
    """Run `podnet ARGV…` as a user would, with this test run's podnet on the path."""
    proc = subprocess.run([sys.executable, "-m", "podnet", *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    if check and proc.returncode != 0:
        raise AssertionError(f"podnet {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def leftovers(name: str) -> list[str]:
    """What of cluster NAME is still on the host: namespaces, /etc/netns files, its state."""
    prefix = f"podnet-{name}."
    found = [n for n in os.listdir("/run/netns") if n.startswith(prefix)] if os.path.isdir("/run/netns") else []
    found += [str(p) for p in Path("/etc/netns").glob(f"{prefix}*")] if Path("/etc/netns").is_dir() else []
    if Path(f"/run/podnet/{name}").exists():
        found.append(f"/run/podnet/{name}")
    return found


AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"


def netexec_deployment(replicas: int, *, probe: bool = True, pod_spec: str = "", container: str = "") -> str:
    """Deployment `web` (pods labelled app=web): agnhost netexec on port 8080, named http,
    Ready when /healthz answers (`probe`). `pod_spec` and `container` are more YAML lines for
    the pod's spec and its container, written without indentation."""
    def indented(lines: str, by: int) -> str:
        return "".join(" " * by + line + "\n" for line in lines.strip("\n").splitlines()) if lines.strip() else ""

    readiness = "readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}\n" if probe else ""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
{indented(pod_spec, 6)}      containers:
      - name: c
        image: {AGNHOST}
        args: [netexec, --http-port=8080]
        ports: [{{name: http, containerPort: 8080}}]
{indented(readiness + container, 8)}"""


WEB_SERVICE = """---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


def pause_pod(name: str, node: str, host_network: bool = False) -> str:
    """A pod that only sleeps (agnhost pause), on `node`."""
    return (f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n"
            + ("  hostNetwork: true\n" if host_network else "")
            + f"  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]\n")


@contextlib.contextmanager
def up_cluster(directory: Path, name: str, manifests: str, networking: str = "{overlay: vxlan, proxyMode: nftables}",
               nodes: int = 2, timeout: float = 180):
    """`podnet up` a cluster NAME of `nodes` nodes with `manifests` (files in `directory`); at the
    end, however the block ended, `podnet down` and nothing of it left on the host."""
    (directory / "app.yaml").write_text(manifests)
    (directory / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\n"
                                            f"nodes: {nodes}\nnetworking: {networking}\n")
    try:
        podnet("up", "-f", str(directory / "app.yaml"), "--config", str(directory / "cluster.yaml"), timeout=timeout)
        yield
    finally:
        if leftovers(name):
            podnet("down", "--name", name, check=False, timeout=timeout)
        removed(name)


def removed(name: str) -> None:
    """Nothing of cluster NAME is left on the host."""
    assert leftovers(name) == [], f"left behind: {leftovers(name)}"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"podnet-{name}." not in netns, netns
    assert api_servers(name) == [], f"the API server of {name} outlived it: pids {api_servers(name)}"


def api_servers(name: str) -> list[int]:
    """Pids of cluster NAME's API server processes (`python -m podnet.apiserver --cluster NAME`)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"podnet.apiserver" in argv and name.encode() in argv:
            found.append(int(proc.name))
    return found
