"""agnhost netexec: HTTP(S) server with the e2e endpoints, a UDP server, and optionally SCTP.

Upstream: test/images/agnhost/netexec/netexec.go. Endpoints, log lines, status codes, JSON
shapes and error strings are upstream's, quirks included (noted where they surprise). Where
podnet differs on purpose:
- SCTP: no process can open an SCTP socket on these machines; --sctp-port logs that clearly and
  TCP/UDP keep serving (upstream would exit). If SCTP sockets do work, it serves SCTP.
- /dial: at most MAX_DIAL_TRIES tries (upstream: unbounded), each bounded by upstream's 5 s, and
  only the host asked for is contacted: an HTTP redirect to another host is not followed (its
  response is the answer).
- /upload writes to $PODNET_AGNHOST_UPLOAD_DIR (default upstream's /uploads): pods share the
  host's filesystem here.
- Servers bind to $PODNET_AGNHOST_BIND_ADDRESS (default: every address, as ":8080" does).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
import zlib

from podnet.agnhost import gohttp
from podnet.agnhost.golang import (
    GoError,
    addr_string,
    bind_address,
    die_on_sigint,
    errno_text,
    escape_path,
    fatal,
    format_duration,
    format_map,
    go_quote,
    hostname,
    is_timeout,
    join_host_port,
    json_marshal,
    log,
    next_signal,
    now_string,
    parse_duration,
    resolve,
    signal_pipe,
    unescape,
    unmap,
)

MAX_DIAL_TRIES = 1000
DIAL_TIMEOUT = 5.0
UPLOAD_DIR_ENV = "PODNET_AGNHOST_UPLOAD_DIR"
SHELL_PATH = "/bin/sh"


def get_hostname() -> str:
    name = hostname()
    log(f"hostname: {name}")
    return name


class Netexec:
    def __init__(self, opts: dict) -> None:
        self.http_port = opts["http-port"]
        self.udp_port = opts["udp-port"]
        self.sctp_port = opts["sctp-port"]
        self.cert_file = opts["tls-cert-file"]
        self.key_file = opts["tls-private-key-file"]
        self.http_override = opts["http-override"]
        self.udp_addresses = opts["udp-listen-addresses"]
        self.delay_shutdown = opts["delay-shutdown"]
        self.ready = False  # serverReady: a UDP (or SCTP) server is running
        self.sigterm = threading.Event()
        self.server: gohttp.Server | None = None

    # -- routing ------------------------------------------------------------------------------

    def mux(self) -> gohttp.ServeMux:
        mux = gohttp.ServeMux()
        for pattern, handler in (
            ("/", self.root), ("/clientip", self.clientip), ("/header", self.header), ("/dial", self.dial),
            ("/echo", self.echo), ("/exit", self.exit), ("/healthz", self.healthz), ("/readyz", self.readyz),
            ("/hostname", self.hostname), ("/redirect", self.redirect), ("/shell", self.shell),
            ("/upload", self.upload), ("/hostName", self.host_name), ("/shutdown", self.shutdown),
        ):
            mux.handle(pattern, handler)
        return mux

    def handler(self):
        mux = self.mux()
        if not self.http_override:
            return mux

        def override(w: gohttp.ResponseWriter, r: gohttp.Request) -> None:
            try:
                req = gohttp.Request.synthetic(self.http_override)
            except GoError as err:
                gohttp.http_error(w, f"override request failed: parse {go_quote(self.http_override)}: {err}", 500)
                return
            mux(w, req)

        outer = gohttp.ServeMux()
        outer.handle("/", override)
        return outer

    # -- endpoints ----------------------------------------------------------------------------

    def root(self, w, r) -> None:
        log("GET /")
        w.write(f"NOW: {now_string()}")

    def echo(self, w, r) -> None:
        msg = r.form_value("msg")
        code = r.form_value("code")
        log(f"GET /echo?msg={msg}&code={code}")
        if code != "":
            try:
                status = _atoi(code)
            except ValueError:
                w.write(f"argument 'code' must be an integer or empty, got {go_quote(code)}\n")
                return
            w.write_header(status)
        w.write(msg)

    def clientip(self, w, r) -> None:
        log("GET /clientip")
        w.write(r.remote_addr)

    def header(self, w, r) -> None:
        key = r.form_value("key")
        if key != "":
            log(f"GET /header?key={key}")
            w.write(r.header.get1(key))
        else:
            log("GET /header")
            w.write(json_marshal(dict(r.header)))

    def exit(self, w, r) -> None:
        wait_s, timeout_s, code_s = r.form_value("wait"), r.form_value("timeout"), r.form_value("code")
        log(f"GET /exit?code={code_s}&timeout={timeout_s}&wait={wait_s}")
        try:
            timeout = parse_duration(timeout_s) if timeout_s else 0
        except GoError:
            w.write(f"argument 'timeout' must be a valid golang duration or empty, got {go_quote(timeout_s)}\n")
            return
        try:
            wait = parse_duration(wait_s) if wait_s else 0
        except GoError:
            w.write(f"argument 'wait' must be a valid golang duration or empty, got {go_quote(wait_s)}\n")
            return
        try:
            code = _atoi(code_s) if code_s else 0
        except ValueError:
            w.write(f"argument 'code' must be an integer [0-127] or empty, got {go_quote(code_s)}\n")
            return
        log(f"Will begin shutdown in {format_duration(wait)}, allowing {format_duration(timeout)} "
            f"for connections to close, then will exit with {code}")
        if wait > 0:
            time.sleep(wait / 1e9)
        if timeout == 0:
            os._exit(code & 0xFF)
        server = self.server

        def graceful() -> None:
            drained = server.shutdown(max(timeout, 0) / 1e9) if server else True
            log(f"Graceful shutdown completed with: {'<nil>' if drained else 'context deadline exceeded'}")
            os._exit(code & 0xFF)

        threading.Thread(target=graceful, daemon=True).start()

    def hostname(self, w, r) -> None:
        log("GET /hostname")
        w.write(get_hostname())

    def host_name(self, w, r) -> None:
        log("GET /hostName")
        w.write(get_hostname())

    def healthz(self, w, r) -> None:
        log("GET /healthz")
        w.write_header(200 if self.ready else 412)

    def readyz(self, w, r) -> None:
        log("GET /readyz")
        if self.sigterm.is_set():
            w.write_header(503)
            w.write("shutting down")
        elif self.ready:
            w.write("ok")
        else:
            w.write_header(412)

    def shutdown(self, w, r) -> None:
        log("GET /shutdown")
        os._exit(0)

    def redirect(self, w, r) -> None:
        location, code_s = r.form_value("location"), r.form_value("code")
        log(f"{r.method} /redirect?msg={location}&code={code_s}")
        code = 302
        if code_s != "":
            try:
                code = _atoi(code_s)
            except ValueError:
                w.write(f"argument 'code' must be an integer or empty, got {go_quote(code_s)}\n")
                return
        gohttp.redirect(w, r, location, code)

    def shell(self, w, r) -> None:
        cmd = r.form_value("shellCommand") or r.form_value("cmd")
        log(f"GET /shell?cmd={cmd}")
        out, err = run_shell(cmd)
        output: dict[str, str] = {}
        if out:
            output["output"] = out
        if err:
            output["error"] = err
        log(f"Output: {format_map(output)}")
        w.write(json_marshal(output))

    def upload(self, w, r) -> None:
        log("GET /upload")
        try:
            _, content = r.form_file("file")
        except GoError as err:
            w.write(json_marshal({"error": "Unable to upload file."}))
            log(f"Unable to upload file: {err}")
            return
        directory = os.environ.get(UPLOAD_DIR_ENV, "/uploads")
        try:
            path, fd = create_temp(directory, "upload")
        except OSError as err:
            w.write(json_marshal({"error": "Unable to open file for write"}))
            log(f"Unable to open file for write: open {err.filename}: {errno_text(err)}")
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
        except OSError as err:
            w.write(json_marshal({"error": "Unable to write file."}))
            log(f"Unable to write file: write {path}: {errno_text(err)}")
            return
        try:
            os.chmod(path, 0o700)
        except OSError as err:
            w.write(json_marshal({"error": "Unable to chmod file."}))
            log(f"Unable to chmod file: chmod {path}: {errno_text(err)}")
            return
        log(f"Wrote upload to {path}")
        w.write_header(201)
        w.write(json_marshal({"output": path}))

    def dial(self, w, r) -> None:
        q = r.query()

        def get(k: str) -> str:
            v = q.get(k)
            return v[0] if v else ""

        host, port, request, protocol, tries_s = get("host"), get("port"), get("request"), get("protocol"), get("tries")
        log(f"GET /dial?host={host}&protocol={protocol}&port={port}&request={request}&tries={tries_s}")
        tries = 1
        if tries_s:
            try:
                tries = _atoi(tries_s)
            except ValueError:
                gohttp.http_error(w, f"tries parameter is invalid. strconv.Atoi: parsing {go_quote(tries_s)}: "
                                     "invalid syntax", 400)
                return
        if not request:
            gohttp.http_error(w, "request parameter not specified. <nil>", 400)
            return
        proto = protocol.lower()
        if proto in ("", "http"):
            dialer, network = dial_http, "tcp"
        elif proto == "udp":
            dialer, network = dial_udp, "udp"
        elif proto == "sctp":
            dialer, network = dial_sctp, "sctp"
        else:
            gohttp.http_error(w, f"unsupported protocol. {protocol}", 400)
            return
        try:
            family, ip, num = resolve(network, host, port)
        except GoError as err:
            gohttp.http_error(w, f"host and/or port param are invalid. {err}", 400)
            return
        errors: list[str] = []
        responses: list[str] = []
        response = ""
        for _ in range(min(tries, MAX_DIAL_TRIES)):
            try:
                response = dialer(request, family, ip, num)
                responses.append(response)
            except GoError as err:
                response = ""
                errors.append(str(err))
        output: dict[str, list[str]] = {}
        if response:  # upstream: responses are reported only when the last try answered
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        w.write(json_marshal(output))

    # -- servers ------------------------------------------------------------------------------

    def serve_udp(self, sock: socket.socket, address: str) -> None:
        log(f"Started UDP server on port {address} {self.udp_port}")
        self.ready = True
        try:
            while True:
                data, client = sock.recvfrom(2048)
                text = data.decode("utf-8", "surrogateescape").strip().lower()
                peer = addr_string(client)
                if text == "hostname":
                    log("Sending udp hostName response")
                    reply = get_hostname()
                elif text.startswith("echo "):
                    reply = text.split(" ", 1)[1]
                    log(f"Echoing {reply} to UDP client {peer}")
                elif text == "clientip":
                    log(f"Sending clientip back to UDP client {peer}")
                    reply = peer
                else:
                    if text:
                        log(f"Unknown UDP command received from {peer}: {text}")
                    continue
                try:
                    sock.sendto(reply.encode("utf-8", "surrogateescape"), client)
                except OSError as err:
                    fatal(f"Error occurred: failed to write to UDP client {peer}:write udp: {errno_text(err)}")
        finally:
            log("UDP server exited")
            self.ready = False

    def start_sctp(self) -> None:
        host = bind_address()
        try:
            family = socket.AF_INET6 if host == "" or ":" in host else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
            except OSError:
                if host != "":
                    raise
                family = socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), self.sctp_port))
            sock.listen(128)
        except OSError as err:
            log(f"SCTP server not started on port {self.sctp_port}: SCTP sockets are unavailable here "
                f"({errno_text(err)}); serving HTTP and UDP only")
            return
        threading.Thread(target=self.serve_sctp, args=(sock,), daemon=True).start()

    def serve_sctp(self, listener: socket.socket) -> None:
        log("Started SCTP server")
        self.ready = True
        try:
            while True:
                conn, client = listener.accept()
                peer = addr_string(client)
                try:
                    text = conn.recv(1024).decode("utf-8", "surrogateescape").strip().lower()
                    if text == "hostname":
                        log("Sending SCTP hostName response")
                        conn.sendall(get_hostname().encode())
                    elif text.startswith("echo "):
                        reply = text.split(" ", 1)[1]
                        log(f"Echoing {reply} to SCTP client {peer}")
                        conn.sendall(reply.encode("utf-8", "surrogateescape"))
                    elif text == "clientip":
                        log(f"Sending clientip back to SCTP client {peer}")
                        conn.sendall(peer.encode())
                    elif text:
                        log(f"Unknown SCTP command received from {peer}: {text}")
                except OSError:
                    pass
                finally:
                    conn.close()
        finally:
            log("SCTP server exited")
            self.ready = False

    def run(self) -> int:
        term = signal_pipe(15)  # SIGTERM; SIGINT keeps Go's default (the process dies)
        die_on_sigint()
        handler = self.handler()
        host = bind_address()
        # UDP: bound before the HTTP port accepts, so /healthz is true from the first request
        udp_socks: list[tuple[socket.socket, str]] = []
        if self.udp_port != -1:
            addresses = parse_addresses(self.udp_addresses)
            for address in addresses:
                try:
                    udp_socks.append((gohttp.listen_udp(address or host, self.udp_port), address))
                except GoError as err:
                    where = join_host_port(address, self.udp_port) if address else f":{self.udp_port}"
                    fatal(f"Error occurred: failed to create listener for UDP address {where}:{err}")
        if self.sctp_port != -1:
            self.start_sctp()
        log(f"Started HTTP server on port {self.http_port}")
        tls = None
        if self.cert_file:
            try:
                tls = gohttp.load_tls(self.cert_file, self.key_file)
            except GoError as err:
                fatal(str(err))
        try:
            sock = gohttp.listen_tcp(host, self.http_port)
        except GoError as err:
            fatal(str(err))
            return 1
        self.server = gohttp.Server(sock, handler, tls)
        for udp_sock, address in udp_socks:
            self.ready = True
            threading.Thread(target=self.serve_udp, args=(udp_sock, address), daemon=True).start()
        gohttp.serve_in_thread(self.server)
        next_signal(term)
        self.sigterm.set()
        if self.delay_shutdown > 0:
            log(f"Sleeping {self.delay_shutdown} seconds before terminating...")
            time.sleep(self.delay_shutdown)
        os._exit(0)


def parse_addresses(addresses: str) -> list[str]:
    if addresses == "":
        return [""]
    result = set()
    for address in addresses.split(","):
        base = address.split("%", 1)[0]
        ok = False
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, base)
                ok = True
            except OSError:
                pass
        if not ok and not _sloppy_ipv4(address):
            fatal(f"parseAddress: invalid address {address}")
        result.add(address)
    return sorted(result)


def _sloppy_ipv4(s: str) -> bool:
    """netutils.ParseIPSloppy also takes IPv4 with leading zeros ("010.001.002.003")."""
    parts = s.split(".")
    return len(parts) == 4 and all(p.isdigit() and p.isascii() and int(p) < 256 for p in parts)


def _atoi(s: str) -> int:
    """strconv.Atoi (base 10, optional sign, no spaces or underscores)."""
    t = s[1:] if s[:1] in ("+", "-") else s
    if not t or not t.isdigit() or not t.isascii():
        raise ValueError(s)
    return int(s)


# ---------------------------------------------------------------------------------------------
# /shell and /upload helpers

def run_shell(cmd: str) -> tuple[str, str]:
    """exec.Command("/bin/sh", "-c", cmd).CombinedOutput(): (output, error text or "")."""
    import subprocess  # deferred: only /shell runs commands; every netexec start would pay for it

    try:
        proc = subprocess.run([SHELL_PATH, "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    except OSError as err:
        return "", f"fork/exec {SHELL_PATH}: {errno_text(err)}"
    out = proc.stdout.decode("utf-8", "surrogateescape")
    code = proc.returncode
    if code == 0:
        return out, ""
    if code > 0:
        return out, f"exit status {code}"

    try:
        name = signal.strsignal(-code) or f"signal {-code}"
    except ValueError:
        name = f"signal {-code}"
    return out, f"signal: {name[:1].lower() + name[1:]}"


def create_temp(directory: str, prefix: str) -> tuple[str, int]:
    """os.CreateTemp(dir, prefix): dir/prefix<random digits>, created exclusively, mode 0600."""
    for _ in range(10000):
        path = os.path.join(directory, f"{prefix}{random.getrandbits(32)}")
        try:
            return path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
    raise FileExistsError(17, "file exists", path)


# ---------------------------------------------------------------------------------------------
# /dial's dialers: one try each, bounded by DIAL_TIMEOUT, to the one address resolved

def dial_http(request: str, family: int, ip: str, port: int) -> str:
    """http.Client{Timeout: 5s}.Get("http://ip:port/" + request), body as text."""
    hostport = join_host_port(ip, port) if ip else f":{port}"
    url = f"http://{hostport}/{request}"
    if not ip:
        raise GoError(f"Get {go_quote(url)}: http: no Host in request URL")
    target = "/" + request.partition("#")[0]
    path_part, q, query = target.partition("?")

    try:
        path = unescape(path_part, query=False)
    except GoError as err:
        raise GoError(f"parse {go_quote(url)}: {err}") from None
    request_uri = escape_path(path) + q + "".join(c if 0x20 < ord(c) < 0x7F else
                                                  "".join(f"%{b:02X}" for b in c.encode()) for c in query)
    deadline = time.monotonic() + DIAL_TIMEOUT
    for _ in range(11):
        status, headers, body_or_err, complete = _http_roundtrip(family, ip, port, hostport, request_uri, deadline,
                                                                 url)
        location = headers.get("location")
        if status in (301, 302, 303, 307, 308) and location:
            nxt = _same_host_target(location, hostport, request_uri)
            if nxt is not None:
                request_uri = nxt
                url = f"http://{hostport}{nxt}"
                continue
        return body_or_err if complete else ""  # upstream returns "" without error when the body fails
    raise GoError(f"Get {go_quote(url)}: stopped after 10 redirects")


def _same_host_target(location: str, hostport: str, current: str) -> str | None:
    if location.startswith("http://"):
        rest = location[len("http://"):]
        host, slash, path = rest.partition("/")
        if host != hostport:
            return None  # another host: not followed (the sandbox rule); this response is the answer
        return "/" + path
    if location.startswith("//") or "://" in location.split("?", 1)[0]:
        return None
    if location.startswith("/"):
        return location
    base = current.split("?", 1)[0]
    return base[: base.rfind("/") + 1] + location


def _http_roundtrip(family: int, ip: str, port: int, hostport: str, request_uri: str, deadline: float,
                    url: str) -> tuple[int, dict[str, str], str, bool]:
    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    awaiting = f"Get {go_quote(url)}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    sock = socket.socket(family or socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            sock.settimeout(left())
            sock.connect((ip, port))
        except (TimeoutError, socket.timeout):
            raise GoError(awaiting) from None
        except OSError as err:
            if is_timeout(err):
                raise GoError(awaiting) from None
            raise GoError(f"Get {go_quote(url)}: dial tcp {join_host_port(ip, port)}: connect: "
                          f"{errno_text(err)}") from None
        local = addr_string(sock.getsockname())
        remote = join_host_port(unmap(ip), port)
        try:
            sock.sendall((f"GET {request_uri} HTTP/1.1\r\nHost: {hostport}\r\n"
                          "User-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n").encode())
            f = sock.makefile("rb")
            while True:  # skip 1xx
                sock.settimeout(left())
                line = f.readline(65536)
                if not line:
                    raise GoError(f"Get {go_quote(url)}: EOF")
                parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
                if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                    raise GoError(f"Get {go_quote(url)}: net/http: HTTP/1.x transport connection broken: "
                                  f"malformed HTTP response {go_quote(line.decode('latin-1').rstrip(chr(13) + chr(10)))}")
                status = int(parts[1])
                headers: dict[str, str] = {}
                while True:
                    sock.settimeout(left())
                    h = f.readline(65536)
                    if not h:
                        raise GoError(f"Get {go_quote(url)}: unexpected EOF")
                    h = h.rstrip(b"\r\n")
                    if not h:
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                if not (100 <= status <= 199) or status == 101:
                    break
        except (TimeoutError, socket.timeout):
            raise GoError(awaiting) from None
        except OSError as err:
            raise GoError(f"Get {go_quote(url)}: read tcp {local}->{remote}: read: {errno_text(err)}") from None
        # the body; a failure here is no error upstream (it returns "" and nil)
        try:
            if status in (204, 304):
                body = b""
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    sock.settimeout(left())
                    size = int(f.readline(4096).split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    sock.settimeout(left())
                    chunks.append(f.read(size))
                    f.readline(4096)
                body = b"".join(chunks)
            elif "content-length" in headers:
                n = int(headers["content-length"])
                sock.settimeout(left())
                body = f.read(n)
                if len(body) < n:
                    return status, headers, "", False
            else:
                chunks = []
                while True:
                    sock.settimeout(left())
                    data = f.read1(65536)
                    if not data:
                        break
                    chunks.append(data)
                body = b"".join(chunks)
            if headers.get("content-encoding", "").lower() == "gzip":
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        except (OSError, ValueError, TimeoutError, Exception):  # noqa: B014
            return status, headers, "", False
        return status, headers, body.decode("utf-8", "surrogateescape"), True
    finally:
        sock.close()


def dial_udp(request: str, family: int, ip: str, port: int) -> str:
    target = ip or "127.0.0.1"
    remote = join_host_port(unmap(target), port)
    try:
        sock = socket.socket(family or socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((target, port))
    except OSError as err:
        raise GoError(f"udp dial failed. err:dial udp {remote}: connect: {errno_text(err)}") from None
    try:
        local = addr_string(sock.getsockname())
        try:
            sock.send(request.encode("utf-8", "surrogateescape"))
        except OSError as err:
            raise GoError(f"udp connection write failed. err:write udp {local}->{remote}: write: "
                          f"{errno_text(err)}") from None
        sock.settimeout(DIAL_TIMEOUT)
        try:
            data = sock.recv(2048)
        except (TimeoutError, socket.timeout):
            raise GoError(f"reading from udp connection failed. err:'read udp {local}->{remote}: i/o timeout'") from None
        except OSError as err:
            raise GoError(f"reading from udp connection failed. err:'read udp {local}->{remote}: read: "
                          f"{errno_text(err)}'") from None
        if not data:
            raise GoError("reading from udp connection failed. err:'<nil>'")
        return data.decode("utf-8", "surrogateescape")
    finally:
        sock.close()


def dial_sctp(request: str, family: int, ip: str, port: int) -> str:
    try:
        sock = socket.socket(family or socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    except OSError as err:
        raise GoError(f"sctp dial failed. err:{errno_text(err)}") from None
    try:
        try:
            sock.settimeout(DIAL_TIMEOUT)
            sock.connect((ip or "127.0.0.1", port))
        except OSError as err:
            raise GoError(f"sctp dial failed. err:{errno_text(err)}") from None
        try:
            sock.sendall(request.encode("utf-8", "surrogateescape"))
        except OSError as err:
            raise GoError(f"sctp connection write failed. err:{errno_text(err)}") from None
        try:
            data = sock.recv(1024)
        except (TimeoutError, socket.timeout):
            raise GoError("reading from sctp connection failed. err:'i/o timeout'") from None
        except OSError as err:
            raise GoError(f"reading from sctp connection failed. err:'{errno_text(err)}'") from None
        if not data:
            raise GoError("reading from sctp connection failed. err:'EOF'")
        return data.decode("utf-8", "surrogateescape")
    finally:
        sock.close()


def run(name: str, opts: dict, args: list[str]) -> int:
    return Netexec(opts).run()
