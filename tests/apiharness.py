"""A podnet API server in front of a supervisor on fake processes and a fake kernel (no root):
what the kubectl tests and bench/apiserver.py drive. Everything of the API path is real — the
supervisor's admission and control plane, its control socket, the API server process's code
with TLS, client certificates and tokens, the watch cache — only the pods do not run.

    with ApiHarness(tmp_path, [manifests...]) as api:
        api.kubectl("get", "pods", "-o", "wide")
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from podnet.apiserver.backend import Supervisor as SupervisorClient
from podnet.apiserver.server import ApiServer, listening, run, tls_context
from podnet.host.layout import ClusterLayout
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.collector import Collector
from podnet.linux.supervisor.loop import run as supervise
from podnet.linux.supervisor.state import ClusterState
from podnet.pki import kubeconfig
from podnet.pki.authority import ClusterCredentials
from tests.supervisor_fakes import FakeDataPlane, FakeRuntime

KUBECTL = shutil.which("kubectl")


class ApiHarness:
    def __init__(self, directory: Path, manifests: list[dict[str, Any]], name: str = "api", nodes: int = 2,
                 config: dict[str, Any] | None = None, collector: Collector | None = None):
        self.directory = directory
        self.collector = collector  # the supervisor process's garbage collector policy (bench: as `up` runs it)
        self.name = name
        config = config or {"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": name, "nodes": nodes}
        self.layout = ClusterLayout(name)
        self.state = ClusterState(self.layout, directory / "state")
        self.state.create(config, manifests)
        self.socket_path = directory / "supervisor.sock"
        self.credentials = ClusterCredentials(directory / "pki")
        # the API server's socket, bound and listening from now on and handed to the server: a port
        # found free and released could be taken (any bind(0) or outgoing connection on the host)
        # in the seconds before the server binds it, as the supervisor holds its API port (c6f2894)
        self._listener = listening(socket.socket(), ("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.kubeconfig = directory / "kubeconfig"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.server: ApiServer | None = None
        self._supervising: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> "ApiHarness":
        self.supervisor = Supervisor(self.layout, self.state, dataplane_factory=FakeDataPlane, runtime_factory=FakeRuntime)
        self.supervisor.start()
        # its loop as `podnet up` runs it: the control socket, reaping, terminations, recomputing
        self._supervising = threading.Thread(target=supervise, args=(self.supervisor, self.socket_path),
                                            kwargs={"collector": self.collector}, daemon=True)
        self._supervising.start()
        deadline = time.monotonic() + 60
        while not self.socket_path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the supervisor's socket did not appear within 60 s")
            time.sleep(0.01)
        self.credentials.ensure(["127.0.0.1"], ["localhost", "kubernetes"])
        self.kubeconfig.write_text(kubeconfig.dump(kubeconfig.render(
            self.name, f"https://127.0.0.1:{self.port}", self.credentials.ca_path.read_bytes(),
            self.credentials.admin_cert_path.read_bytes(), self.credentials.admin_key_path.read_bytes())))
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(60):
            raise RuntimeError("the API server did not start within 60 s")
        return self

    def _serve(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self.server = ApiServer(SupervisorClient(self.socket_path), self.credentials.sa_pub_path.read_bytes(),
                                    f"127.0.0.1:{self.port}", self.name)
            self.server.signing_key = self.credentials.sa_key_path.read_bytes()
            self.register(self.server)
            task = asyncio.create_task(run(self.server, tls_context(self.credentials), [self._listener]))
            await self.server.serving.wait()
            ready.set()
            await task
        asyncio.run(main())

    def register(self, server: ApiServer) -> None:
        """Subresource handlers (streams) a test wants: none by default."""

    def __exit__(self, *exc) -> None:
        if self._loop is not None and self.server is not None:
            self._loop.call_soon_threadsafe(self.server.stopping.set)
        if self._thread is not None:
            self._thread.join(30)
        self.supervisor.stopping.set()
        self._supervising.join(30)
        self._listener.close()

    # -- clients ------------------------------------------------------------------------------------

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        if KUBECTL is None:
            raise RuntimeError("kubectl is not installed")
        result = subprocess.run([KUBECTL, "--kubeconfig", str(self.kubeconfig), *args], capture_output=True, text=True,
                                input=input, timeout=timeout,
                                env={**os.environ, "HOME": str(self.directory), **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def kubectl_json(self, *args: str) -> Any:
        return yaml.safe_load(self.kubectl(*args, "-o", "json").stdout)
