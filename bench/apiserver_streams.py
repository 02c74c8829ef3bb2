"""kubectl exec and port-forward through podnet.apiserver.streams: throughput and round trips.

    PYTHONPATH=src python bench/apiserver_streams.py [--megabytes 200] [--rounds 20]

The real kubectl against a local aiohttp server that routes pods/exec and pods/portforward to
the stream handlers (plain HTTP on 127.0.0.1, no API server, no cluster: what is measured is the
protocol code and kubectl, not a pod's namespaces). Exec runs host commands; port-forward goes to
local TCP servers. Reported: exec stdout (`head -c N /dev/zero`) and stdin (`wc -c` of N bytes
piped in) in MB/s, port-forward pod->client and client->pod in MB/s over one connection, and
the median and p90 of a whole `kubectl exec -- true` (kubectl's start, its pod GET, the upgrade,
the process, the close) and of a request/answer through an open port-forward.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

from podnet.apiserver import streams

POD = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web", "namespace": "default", "uid": "u"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}, "status": {"phase": "Running"}}
RESOURCES = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["get", "list"]}]}


class Server:
    def __init__(self, directory: Path):
        self.targets: dict[int, int] = {}
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "bench",
            "clusters": [{"name": "bench", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "bench", "user": {}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench", "namespace": "default"}}]}))

    async def _start(self) -> int:
        def constant(body):
            async def answer(request):
                return web.json_response(body)
            return answer

        async def exec_(request):
            options = streams.exec_options(request)
            return await streams.exec_websocket(request, list(options.command), stdin=options.stdin, tty=options.tty,
                                                stdout=options.stdout, stderr=options.stderr)

        async def portforward(request):
            return await streams.portforward_websocket(
                request, lambda port: streams.connect_in_netns(None, self.targets[port]), pod="web")

        app = web.Application()
        app.router.add_get("/api", constant({"kind": "APIVersions", "versions": ["v1"]}))
        app.router.add_get("/apis", constant({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
        app.router.add_get("/api/v1", constant(RESOURCES))
        app.router.add_get("/api/v1/namespaces/default/pods/web", constant(POD))
        for method in ("GET", "POST"):
            app.router.add_route(method, "/api/v1/namespaces/default/pods/web/exec", exec_)
            app.router.add_route(method, "/api/v1/namespaces/default/pods/web/portforward", portforward)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    def kubectl(self, *args: str, **kwargs) -> list[str]:
        return [shutil.which("kubectl") or "/usr/bin/kubectl", "--kubeconfig", str(self.kubeconfig), *args]


def serve_once(handler) -> int:
    listening = socket.create_server(("127.0.0.1", 0))

    def run():
        while True:
            conn, _ = listening.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()
    threading.Thread(target=run, daemon=True).start()
    return listening.getsockname()[1]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    size = args.megabytes * 1_000_000
    server = Server(Path(tempfile.mkdtemp()))

    started = time.monotonic()
    out = subprocess.run(server.kubectl("exec", "web", "--", "head", "-c", str(size), "/dev/zero"),
                         capture_output=True, check=True).stdout
    took = time.monotonic() - started
    assert len(out) == size
    print(f"exec stdout       {size / took / 1e6:8.0f} MB/s  ({args.megabytes} MB in {took:.2f} s)")

    started = time.monotonic()
    out = subprocess.run(server.kubectl("exec", "-i", "web", "--", "wc", "-c"), input=b"\0" * size,
                         capture_output=True, check=True).stdout
    took = time.monotonic() - started
    assert int(out) == size
    print(f"exec stdin        {size / took / 1e6:8.0f} MB/s  ({args.megabytes} MB in {took:.2f} s)")

    def source(conn):
        with conn:
            conn.sendall(b"\0" * size)

    def sink(conn):
        with conn:
            received = 0
            while chunk := conn.recv(1 << 20):
                received += len(chunk)
            conn.sendall(str(received).encode())

    def echo(conn):
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                conn.sendall(line)

    server.targets = {1: serve_once(source), 2: serve_once(sink), 3: serve_once(echo)}
    forward = subprocess.Popen(server.kubectl("port-forward", "pod/web", "0:1", "0:2", "0:3"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    local = {}
    while len(local) < 3:  # kubectl says so for 127.0.0.1 and for [::1]
        found = re.match(rb"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", forward.stdout.readline())
        if found:
            local[int(found.group(2))] = int(found.group(1))
    try:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", local[1])) as conn:
            received = 0
            while chunk := conn.recv(1 << 20):
                received += len(chunk)
        took = time.monotonic() - started
        assert received == size
        print(f"port-forward down {size / took / 1e6:8.0f} MB/s  ({args.megabytes} MB in {took:.2f} s)")

        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", local[2])) as conn:
            conn.sendall(b"\0" * size)
            conn.shutdown(socket.SHUT_WR)
            answer = conn.recv(64)
        took = time.monotonic() - started
        assert int(answer) == size
        print(f"port-forward up   {size / took / 1e6:8.0f} MB/s  ({args.megabytes} MB in {took:.2f} s)")

        round_trips = []
        with socket.create_connection(("127.0.0.1", local[3])) as conn, conn.makefile("rb") as lines:
            for _ in range(args.rounds * 10):
                started = time.monotonic()
                conn.sendall(b"ping\n")
                assert lines.readline() == b"ping\n"
                round_trips.append(time.monotonic() - started)
        print(f"port-forward round trip  median {statistics.median(round_trips) * 1e3:.2f} ms, "
              f"p90 {percentile(round_trips, 0.9) * 1e3:.2f} ms ({len(round_trips)} on one connection)")
    finally:
        forward.terminate()
        forward.wait()

    runs = []
    for _ in range(args.rounds):
        started = time.monotonic()
        subprocess.run(server.kubectl("exec", "web", "--", "true"), check=True, capture_output=True)
        runs.append(time.monotonic() - started)
    print(f"kubectl exec -- true     median {statistics.median(runs) * 1e3:.0f} ms, "
          f"p90 {percentile(runs, 0.9) * 1e3:.0f} ms ({args.rounds} runs, kubectl's own start included)")


if __name__ == "__main__":
    main()
