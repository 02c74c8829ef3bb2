"""A small HTTP/1.1 server (and the one client /dial needs) that answers the way Go's net/http does.

Why not http.server: importing it costs ~30 ms (it pulls in http.client, email and ssl), which is
most of an agnhost container's start-up, times 300 pods; and its responses differ from Go's
(Server header, no content sniffing, no path-cleaning redirects). What agnhost's users observe
of net/http is reproduced here: the status line and header set (Date, Content-Length, sniffed
Content-Type), ServeMux's routing and its 301 to the cleaned path, http.Redirect's and
http.Error's bodies, keep-alive, 100-continue and 1xx, streaming with Flush, Hijack-and-close,
graceful Shutdown, and TLS when a certificate is given (ssl is imported only then).

One thread per connection, as Go runs one goroutine per connection.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from podnet.agnhost.golang import (
    GoError,
    addr_string,
    clean_path,
    errno_text,
    escape_path,
    go_quote,
    join_host_port,
    log,
    parse_query,
    unescape,
)

STATUS_TEXT = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information", 204: "No Content",
    205: "Reset Content", 206: "Partial Content", 207: "Multi-Status", 208: "Already Reported",
    226: "IM Used", 300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 305: "Use Proxy", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 409: "Conflict", 410: "Gone", 411: "Length Required",
    412: "Precondition Failed", 413: "Request Entity Too Large", 414: "Request URI Too Long",
    415: "Unsupported Media Type", 416: "Requested Range Not Satisfiable", 417: "Expectation Failed",
    418: "I'm a teapot", 421: "Misdirected Request", 422: "Unprocessable Entity", 423: "Locked",
    424: "Failed Dependency", 425: "Too Early", 426: "Upgrade Required", 428: "Precondition Required",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    451: "Unavailable For Legal Reasons", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
    505: "HTTP Version Not Supported", 506: "Variant Also Negotiates", 507: "Insufficient Storage",
    508: "Loop Detected", 510: "Not Extended", 511: "Network Authentication Required",
}

MAX_HEADER_BYTES = (1 << 20) + 4096  # Go's DefaultMaxHeaderBytes plus its slack
MAX_BODY_BYTES = 256 << 20  # bodies are read whole; agnhost's handlers need no more

_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# canonical keys already computed: a proxy sends the same dozen headers with every request, and
# a per-character loop for each was most of the request's cost behind nginx
_CANONICAL: dict[str, str] = {}
_CANONICAL_LIMIT = 1024


def is_token(text: str) -> bool:
    """RFC 7230 token (in C: strip removes every token character, nothing may remain)."""
    return bool(text) and not text.strip(_TOKEN_CHARS)


def canonical_key(key: str) -> str:
    """textproto.CanonicalMIMEHeaderKey."""
    known = _CANONICAL.get(key)
    if known is not None:
        return known
    canonical = "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-")) if is_token(key) else key
    if len(_CANONICAL) >= _CANONICAL_LIMIT:
        _CANONICAL.clear()  # a client inventing keys: forget, do not grow
    _CANONICAL[key] = canonical
    return canonical


class Header(dict):
    """http.Header: canonical key -> values."""

    def get1(self, key: str) -> str:
        values = dict.get(self, canonical_key(key))
        return values[0] if values else ""

    def set(self, key: str, value: str) -> None:
        self[canonical_key(key)] = [value]

    def add(self, key: str, value: str) -> None:
        self.setdefault(canonical_key(key), []).append(value)

    def delete(self, key: str) -> None:
        self.pop(canonical_key(key), None)

    def has(self, key: str) -> bool:
        return canonical_key(key) in self


class Panic(Exception):
    """What a Go handler's panic is: the server logs it and drops the connection."""


class BadRequest(Exception):
    """A request Go's server rejects before any handler runs, answered as Go answers it."""

    def __init__(self, code: int, reason: str = ""):
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def response(self) -> bytes:
        headers = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
        if self.code == 400:
            public = "400 Bad Request" + (": " + self.reason if self.reason else "")
            text = "HTTP/1.0 " + public + headers + public
        elif self.code == 501:
            text = "HTTP/1.1 501 Not Implemented" + headers + "Unsupported transfer encoding"
        else:
            public = f"{self.code} {STATUS_TEXT.get(self.code, '')}"
            text = "HTTP/1.1 " + public + headers + public
        return text.encode("latin-1", "replace")


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        k, eq, v = item.strip().partition("=")
        if eq:
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] == '"':
                v = v[1:-1]
            params[k.strip().lower()] = v
    return kind.strip().lower(), params


class Request:
    def __init__(self) -> None:
        self.method = "GET"
        self.request_uri = ""
        self.proto = "HTTP/1.1"
        self.minor = 1
        self.header = Header()
        self.host = ""
        self.path = "/"
        self.raw_query = ""
        self.body = b""
        self.remote_addr = ""
        self.close = False
        self.tls = False
        self._query: dict[str, list[str]] | None = None
        self._form: dict[str, list[str]] | None = None
        self._files: dict[str, list[tuple[str, bytes]]] | None = None
        self._multipart_error = ""

    @classmethod
    def synthetic(cls, url: str) -> "Request":
        """http.NewRequest("GET", url, nil): no headers, no peer address (--http-override)."""
        r = cls()
        target = url
        if "://" in url:
            rest = url.split("://", 1)[1]
            slash = rest.find("/")
            r.host, target = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
        raw_path, _, r.raw_query = target.partition("?")
        r.raw_query = r.raw_query.partition("#")[0]
        raw_path = raw_path.partition("#")[0]
        r.path = unescape(raw_path, query=False)
        r.request_uri = target
        return r

    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = parse_query(self.raw_query)
        return self._query

    def query_get(self, key: str) -> str:
        values = self.query().get(key)
        return values[0] if values else ""

    def _parse_form(self) -> None:
        form: dict[str, list[str]] = {}
        ctype = self.header.get1("Content-Type") or "application/octet-stream"
        kind, params = parse_media_type(ctype)
        if self.method in ("POST", "PUT", "PATCH") and kind == "application/x-www-form-urlencoded":
            for k, v in parse_query(self.body[: 10 << 20].decode("utf-8", "surrogateescape")).items():
                form.setdefault(k, []).extend(v)
        for k, v in self.query().items():
            form.setdefault(k, []).extend(v)
        self._files = {}
        if kind == "multipart/form-data" and self.method in ("POST", "PUT", "PATCH") and params.get("boundary"):
            values, self._files = parse_multipart(self.body, params["boundary"])
            for k, v in values.items():
                form.setdefault(k, []).extend(v)
        elif kind != "multipart/form-data" or not params.get("boundary"):
            self._multipart_error = ("request Content-Type isn't multipart/form-data"
                                     if kind != "multipart/form-data" else "no multipart boundary param in Content-Type")
        self._form = form

    def form_value(self, key: str) -> str:
        """Request.FormValue: POST form first, then the query, then multipart values."""
        if self._form is None:
            self._parse_form()
        values = self._form.get(key)
        return values[0] if values else ""

    def form_file(self, key: str) -> tuple[str, bytes]:
        """Request.FormFile: (filename, content); raises GoError as Go does."""
        if self._form is None:
            self._parse_form()
        if self._multipart_error:
            raise GoError(self._multipart_error)
        files = (self._files or {}).get(key)
        if not files:
            raise GoError("http: no such file")
        return files[0]


def parse_multipart(body: bytes, boundary: str) -> tuple[dict[str, list[str]], dict[str, list[tuple[str, bytes]]]]:
    values: dict[str, list[str]] = {}
    files: dict[str, list[tuple[str, bytes]]] = {}
    delim = b"\r\n--" + boundary.encode("latin-1", "replace")
    for part in (b"\r\n" + body).split(delim)[1:]:
        if part.startswith(b"--"):
            break
        part = part.split(b"\n", 1)[1] if b"\n" in part else b""  # rest of the delimiter line
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = filename = None
        for line in head.split(b"\r\n"):
            key, _, value = line.decode("utf-8", "surrogateescape").partition(":")
            if key.strip().lower() == "content-disposition":
                _, params = parse_media_type(value)
                name, filename = params.get("name"), params.get("filename")
        if name is None:
            continue
        if filename is not None:
            files.setdefault(name, []).append((filename, data))
        else:
            values.setdefault(name, []).append(data.decode("utf-8", "surrogateescape"))
    return values, files


# ---------------------------------------------------------------------------------------------
# content sniffing (http.DetectContentType, the signatures that matter for text servers)

_HTML_SIGS = (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV", b"<FONT",
              b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P", b"<!--")
_EXACT_SIGS = ((b"%PDF-", "application/pdf"), (b"%!PS-Adobe-", "application/postscript"),
               (b"\xfe\xff", "text/plain; charset=utf-16be"), (b"\xff\xfe", "text/plain; charset=utf-16le"),
               (b"\xef\xbb\xbf", "text/plain; charset=utf-8"), (b"GIF87a", "image/gif"),
               (b"GIF89a", "image/gif"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
               (b"\x1f\x8b\x08", "application/x-gzip"), (b"PK\x03\x04", "application/zip"),
               (b"\x00\x00\x01\x00", "image/x-icon"), (b"BM", "image/bmp"))
_BINARY = frozenset(list(range(0, 9)) + [0x0B] + list(range(0x0E, 0x1B)) + list(range(0x1C, 0x20)))


def sniff(data: bytes) -> str:
    data = data[:512]
    stripped = data.lstrip(b"\t\n\x0c\r ")
    upper = stripped[:16].upper()
    for sig in _HTML_SIGS:
        if upper.startswith(sig) and len(stripped) > len(sig) and stripped[len(sig)] in b" >":
            return "text/html; charset=utf-8"
    if stripped.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    for sig, kind in _EXACT_SIGS:
        if data.startswith(sig):
            return kind
    if any(b in _BINARY for b in data):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def _body_allowed(code: int) -> bool:
    return not (100 <= code <= 199 or code in (204, 304))


def http_date() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


# ---------------------------------------------------------------------------------------------
# the response writer

class ResponseWriter:
    def __init__(self, conn: socket.socket, req: Request) -> None:
        self.conn = conn
        self.req = req
        self.header = Header()
        self.status = 0
        self.buf = bytearray()
        self.sent = False  # the header is on the wire (after Flush)
        self.chunked = False
        self.hijacked = False
        self.close = req.close

    def _send(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn.sendall(data)

    def write_header(self, code: int) -> None:
        if self.hijacked:
            return
        if self.status:
            log("http: superfluous response.WriteHeader call")
            return
        if code < 100 or code > 999:
            raise Panic(f"invalid WriteHeader code {code}")
        if 100 <= code <= 199 and code != 101:
            lines = [f"HTTP/1.{self.req.minor} {code} {STATUS_TEXT.get(code, f'status code {code}')}"]
            for k in sorted(self.header):
                lines += [f"{k}: {v}" for v in self.header[k]]
            self._send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace"))
            return
        self.status = code

    def write(self, data: bytes | str) -> None:
        if self.hijacked:
            return
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if not self.status:
            self.write_header(200)
        if not _body_allowed(self.status):
            return
        self.buf += data
        if self.sent and len(self.buf) >= 4096:
            self._flush_chunk()

    def _head(self, length: int | None) -> bytes:
        code = self.status
        lines = [f"HTTP/1.{self.req.minor} {code} {STATUS_TEXT.get(code, f'status code {code}')}"]
        for k in sorted(self.header):
            lines += [f"{k}: {v}" for v in self.header[k]]
        if not self.header.has("Date"):
            lines.append("Date: " + http_date())
        if length is not None and _body_allowed(code) and not self.header.has("Content-Length"):
            lines.append(f"Content-Length: {length}")
        if not self.header.has("Content-Type") and _body_allowed(code) and self.buf:
            lines.append("Content-Type: " + sniff(bytes(self.buf)))
        if self.header.get1("Connection").lower() == "close":
            self.close = True
        elif self.close and self.req.minor >= 1:
            lines.append("Connection: close")
        elif not self.close and self.req.minor == 0:
            lines.append("Connection: keep-alive")
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def flush(self) -> None:
        """http.Flusher: send what is written so far, the rest follows chunked."""
        if self.hijacked:
            return
        if not self.status:
            self.write_header(200)
        if not self.sent:
            if self.req.minor >= 1:
                self.chunked = _body_allowed(self.status)
            else:
                self.close = True
            head = self._head(None)
            self.sent = True
            self._send(head)
        self._flush_chunk()

    def _flush_chunk(self) -> None:
        if not self.buf or self.req.method == "HEAD":
            self.buf.clear()
            return
        data = bytes(self.buf)
        self.buf.clear()
        if self.chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self._send(data)

    def hijack_close(self) -> None:
        """Hijack the connection and close it: the client sees the connection drop."""
        self.hijacked = True
        try:
            self.conn.close()
        except OSError:
            pass

    def finish(self) -> None:
        if self.hijacked:
            return
        if not self.status:
            self.write_header(200)
        if not self.sent:
            head = self._head(len(self.buf))
            self.sent = True
            body = b"" if self.req.method == "HEAD" else bytes(self.buf)
            self.buf.clear()
            self._send(head + body)
        else:
            self._flush_chunk()
            if self.chunked:
                self._send(b"0\r\n\r\n")


def http_error(w: ResponseWriter, msg: str, code: int) -> None:
    """http.Error."""
    w.header.delete("Content-Length")
    w.header.set("Content-Type", "text/plain; charset=utf-8")
    w.header.set("X-Content-Type-Options", "nosniff")
    w.write_header(code)
    w.write(msg + "\n")


def _html_escape(s: str) -> str:
    return (s.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;"))


def _has_scheme_or_host(url: str) -> bool:
    if url.startswith("//"):
        return True
    for i, c in enumerate(url):
        if c.isascii() and c.isalpha():
            continue
        if i > 0 and (c.isdigit() or c in "+-."):
            continue
        return c == ":" and i > 0
    return False


def redirect(w: ResponseWriter, r: Request, url: str, code: int) -> None:
    """http.Redirect."""
    if not _has_scheme_or_host(url):
        old = r.path or "/"
        if not url or url[0] != "/":
            url = old[: old.rfind("/") + 1] + url
        url, q, query = url.partition("?")
        trailing = url.endswith("/")
        url = clean_path(url)
        if trailing and not url.endswith("/"):
            url += "/"
        url += q + query
    had_ct = w.header.has("Content-Type")
    w.header.set("Location", "".join(c if ord(c) < 0x80 else "".join(f"%{b:02x}" for b in c.encode())
                                     for c in url))
    if not had_ct and r.method in ("GET", "HEAD"):
        w.header.set("Content-Type", "text/html; charset=utf-8")
    w.write_header(code)
    if not had_ct and r.method == "GET":
        w.write(f'<a href="{_html_escape(url)}">{STATUS_TEXT.get(code, "")}</a>.\n\n')


def mux_clean_path(p: str) -> str:
    if p == "":
        return "/"
    if p[0] != "/":
        p = "/" + p
    np = clean_path(p)
    if p.endswith("/") and np != "/":
        np += "/"
    return np


class ServeMux:
    """http.ServeMux with exact patterns and subtree patterns ending in '/'."""

    def __init__(self) -> None:
        self.routes: dict[str, object] = {}

    def handle(self, pattern: str, handler) -> None:
        self.routes[pattern] = handler

    def __call__(self, w: ResponseWriter, r: Request) -> None:
        if r.method != "CONNECT":
            clean = mux_clean_path(r.path)
            if clean != r.path:
                redirect(w, r, escape_path(clean) + ("?" + r.raw_query if r.raw_query else ""), 301)
                return
        handler = self.routes.get(r.path)
        if handler is None:
            best = ""
            for pattern in self.routes:
                if pattern.endswith("/") and r.path.startswith(pattern) and len(pattern) > len(best):
                    best = pattern
            handler = self.routes.get(best) if best else None
        if handler is None:
            http_error(w, "404 page not found", 404)
            return
        handler(w, r)


# ---------------------------------------------------------------------------------------------
# reading a request

class _Reader:
    def __init__(self, f) -> None:
        self.f = f
        self.budget = MAX_HEADER_BYTES

    def line(self) -> bytes | None:
        data = self.f.readline(self.budget + 1)
        if not data:
            return None
        self.budget -= len(data)
        if self.budget < 0:
            raise BadRequest(431)
        if not data.endswith(b"\n"):
            raise BadRequest(400)
        return data.rstrip(b"\r\n")


def read_request(f, conn: socket.socket, remote: str, is_tls: bool) -> Request | None:
    rd = _Reader(f)
    first = rd.line()
    if first is None:
        return None
    text = first.decode("latin-1")
    method, sp1, rest = text.partition(" ")
    target, sp2, proto = rest.partition(" ")
    if not sp1 or not sp2:
        raise BadRequest(400, "malformed HTTP request " + go_quote(text))
    if not is_token(method):
        raise BadRequest(400, "invalid method " + go_quote(method))
    if not (proto.startswith("HTTP/1.") and len(proto) == 8 and proto[7].isdigit()):
        raise BadRequest(505 if proto.startswith("HTTP/") and proto[5:6] != "1" else 400,
                         "malformed HTTP version " + go_quote(proto))
    r = Request()
    r.method, r.request_uri, r.proto, r.minor = method, target, proto, int(proto[7])
    r.remote_addr, r.tls = remote, is_tls
    add = r.header.add
    line = rd.line
    while (text := line()):
        if text[:1] in (b" ", b"\t"):
            raise BadRequest(400, "malformed MIME header: unexpected continuation line")
        key, colon, value = text.decode("latin-1").partition(":")
        if not colon or not is_token(key):
            raise BadRequest(400, "malformed MIME header line: " + text.decode("latin-1"))
        add(key, value.strip(" \t"))
    if text is None:
        return None
    # the target: origin-form, absolute-form, or * for OPTIONS
    if target == "*" and method == "OPTIONS":
        r.path = "*"
    else:
        if target.startswith("/"):
            raw = target
        elif "://" in target:
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            r.host, raw = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
        else:
            raise BadRequest(400, "invalid URI for request")
        raw_path, _, r.raw_query = raw.partition("?")
        try:
            r.path = unescape(raw_path, query=False)
        except GoError:
            raise BadRequest(400) from None
    hosts = r.header.pop("Host", [])
    if len(hosts) > 1:
        raise BadRequest(400, "too many Host headers")
    if not r.host:
        r.host = hosts[0] if hosts else ""
    if r.minor >= 1 and not hosts:
        raise BadRequest(400, "missing required Host header")
    conn_tokens = ",".join(r.header.get("Connection", [])).lower()
    if r.minor >= 1:
        r.close = "close" in conn_tokens
    else:
        r.close = "keep-alive" not in conn_tokens
    # the body
    te = r.header.pop("Transfer-Encoding", None)
    length = None
    if te is not None:
        if [t.strip().lower() for t in ",".join(te).split(",")] != ["chunked"]:
            raise BadRequest(501)
        r.header.delete("Content-Length")
    else:
        lengths = set(r.header.get("Content-Length", []))
        if len(lengths) > 1:
            raise BadRequest(400, "invalid Content-Length")
        if lengths:
            value = lengths.pop().strip()
            if not value.isdigit():
                raise BadRequest(400, f"bad Content-Length {go_quote(value)}")
            length = int(value)
            if length > MAX_BODY_BYTES:
                raise BadRequest(413)
    has_body = te is not None or bool(length)
    expect = r.header.get1("Expect").lower()
    if expect and has_body:
        if expect != "100-continue" or r.minor < 1:
            raise BadRequest(417)
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if te is not None:
        chunks, total = [], 0
        while True:
            size_line = f.readline(4096)
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest(400) from None
            if size == 0:
                while f.readline(4096).strip(b"\r\n"):
                    pass
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise BadRequest(413)
            chunks.append(f.read(size))
            f.readline(4096)
        r.body = b"".join(chunks)
    elif length:
        r.body = f.read(length)
        if len(r.body) < length:
            return None
    return r


# ---------------------------------------------------------------------------------------------
# the server

class Server:
    """http.Server over an already listening socket."""

    def __init__(self, sock: socket.socket, handler, tls_context=None) -> None:
        self.sock = sock
        self.handler = handler
        self.tls = tls_context
        self.cond = threading.Condition()
        self.active = 0
        self.closing = False
        threading.stack_size(512 * 1024)  # a thread per connection; Go's goroutines are smaller still
        # listening: in a podnet cluster, tell the runtime the program has started, so kubelet's
        # first probe follows now (podnet.host.started; agnhost imports nothing of podnet)
        started = os.environ.pop("PODNET_STARTED_FILE", None)
        if started:
            try:
                open(started, "a").close()
            except OSError:
                pass

    def serve_forever(self) -> None:
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError as err:
                if self.closing:
                    return
                if err.errno in (24, 23, 105, 12):  # EMFILE, ENFILE, ENOBUFS, ENOMEM: back off, as Go
                    log(f"http: Accept error: {err}; retrying in 5ms")
                    time.sleep(0.005)
                    continue
                raise
            threading.Thread(target=self._connection, args=(conn, addr), daemon=True).start()

    def shutdown(self, timeout: float) -> bool:
        """Close the listener, wait (up to timeout seconds) for requests in flight to finish."""
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept()
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def _connection(self, conn: socket.socket, addr) -> None:
        remote = addr_string(addr)
        try:
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            if self.tls is not None:
                conn.settimeout(30)
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ValueError) as err:
                    reason = getattr(err, "reason", None) or str(err) or "EOF"
                    log(f"http: TLS handshake error from {remote}: {reason}")
                    return
                conn.settimeout(None)
            f = conn.makefile("rb")
            while not self.closing:
                try:
                    req = read_request(f, conn, remote, self.tls is not None)
                except BadRequest as bad:
                    conn.sendall(bad.response())
                    return
                if req is None:
                    return
                with self.cond:
                    self.active += 1
                try:
                    keep = self._serve(conn, req, remote)
                finally:
                    with self.cond:
                        self.active -= 1
                        self.cond.notify_all()
                if not keep:
                    return
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _serve(self, conn: socket.socket, req: Request, remote: str) -> bool:
        w = ResponseWriter(conn, req)
        try:
            if req.path == "*" and req.method == "OPTIONS":
                w.header.set("Content-Length", "0")
            else:
                self.handler(w, req)
        except OSError:
            return False  # the client went away mid-response
        except Exception as err:  # a handler's panic: Go logs it and drops the connection
            log(f"http: panic serving {remote}: {err}")
            return False
        if w.hijacked:
            return False
        w.finish()
        return not (w.close or self.closing)


# ---------------------------------------------------------------------------------------------
# listening

def listen_tcp(host: str, port: int, backlog: int = 4096) -> socket.socket:
    """net.Listen("tcp", host:port). host "" is every address, both families when the namespace
    has IPv6 (Go's ":port"). Raises GoError "listen tcp :8080: bind: address already in use"."""
    return _listen(socket.SOCK_STREAM, host, port, backlog)


def listen_udp(host: str, port: int) -> socket.socket:
    return _listen(socket.SOCK_DGRAM, host, port, 0)


def _listen(kind: int, host: str, port: int, backlog: int) -> socket.socket:
    net = "tcp" if kind == socket.SOCK_STREAM else "udp"
    candidates: list[tuple[int, str]]
    if host == "":
        candidates = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
    elif ":" in host:
        candidates = [(socket.AF_INET6, host)]
    else:
        candidates = [(socket.AF_INET, host)]
    last: OSError | None = None
    op = "socket"
    for family, address in candidates:
        try:
            op = "socket"
            sock = socket.socket(family, kind)
        except OSError as err:
            last = err
            continue
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            op = "bind"
            sock.bind((address, port))
            if kind == socket.SOCK_STREAM:
                op = "listen"
                sock.listen(backlog)
            return sock
        except OSError as err:
            sock.close()
            last = err
            if family == socket.AF_INET6 and host == "" and err.errno in (97, 99, 22):
                continue  # no IPv6 in this namespace: IPv4 only
            break
    where = join_host_port(host, port) if host else f":{port}"
    raise GoError(f"listen {net} {where}: {op}: {errno_text(last) if last else 'failed'}")


def tls_context(certfile: str, keyfile: str):
    import ssl  # only servers given a certificate pay for it

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    try:
        ctx.set_alpn_protocols(["http/1.1"])
    except (NotImplementedError, AttributeError):
        pass
    return ctx


def load_tls(certfile: str, keyfile: str):
    """tls.LoadX509KeyPair's failure reads "open /x.crt: no such file or directory"."""
    for path in (certfile, keyfile):
        try:
            with open(path, "rb"):
                pass
        except OSError as err:
            raise GoError(f"open {path}: {errno_text(err)}") from None
    try:
        return tls_context(certfile, keyfile)
    except Exception as err:  # ssl.SSLError and friends
        raise GoError(f"tls: failed to find any PEM data in certificate input ({err})") from None


def serve_in_thread(server: Server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread
