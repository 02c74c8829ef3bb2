"""agnhost test-webserver: a static file server of the container's filesystem on --port (80).

Upstream: test/images/agnhost/test-webserver/test-webserver.go, which is
http.StripPrefix("/", http.FileServer(http.Dir("/"))) behind permissive CORS headers. Here:
files (Content-Type by extension, else sniffed; Last-Modified), directory listings in Go's
format, index.html, the redirects FileServer makes (dir -> dir/, /index.html -> ./), and its
404/403/500 texts. Not reproduced: Range requests and If-Modified-Since (which the upstream
handler strips anyway) — a file is always sent whole.
Pods share the host's filesystem in podnet, so this serves the host's files, as a pod of the
upstream image serves its container's.
"""

from __future__ import annotations

import os
import stat
import time

from podnet.agnhost import gohttp
from podnet.agnhost.golang import GoError, bind_address, clean_path, die_on_sigint, escape_path, fatal

ROOT = "/"
_GO_TYPES = {".css": "text/css; charset=utf-8", ".gif": "image/gif", ".htm": "text/html; charset=utf-8",
             ".html": "text/html; charset=utf-8", ".jpeg": "image/jpeg", ".jpg": "image/jpeg",
             ".js": "text/javascript; charset=utf-8", ".json": "application/json", ".mjs":
             "text/javascript; charset=utf-8", ".pdf": "application/pdf", ".png": "image/png",
             ".svg": "image/svg+xml", ".wasm": "application/wasm", ".webp": "image/webp",
             ".xml": "text/xml; charset=utf-8", ".avif": "image/avif"}


def _local_redirect(w: gohttp.ResponseWriter, r: gohttp.Request, target: str) -> None:
    if r.raw_query:
        target += "?" + r.raw_query
    w.header.set("Location", target)
    w.write_header(301)


def _not_found(w, err: OSError) -> None:
    if isinstance(err, (FileNotFoundError, NotADirectoryError)):
        gohttp.http_error(w, "404 page not found", 404)
    elif isinstance(err, PermissionError):
        gohttp.http_error(w, "403 Forbidden", 403)
    else:
        gohttp.http_error(w, "500 Internal Server Error", 500)


def _html(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
            .replace("'", "&#39;"))


def serve_file(w: gohttp.ResponseWriter, r: gohttp.Request, url_path: str) -> None:
    if url_path.endswith("/index.html"):
        _local_redirect(w, r, "./")
        return
    name = clean_path(url_path)
    full = os.path.join(ROOT, name.lstrip("/"))
    try:
        st = os.stat(full)
    except OSError as err:
        _not_found(w, err)
        return
    if stat.S_ISDIR(st.st_mode):
        if not url_path.endswith("/"):
            _local_redirect(w, r, os.path.basename(url_path.rstrip("/")) + "/")
            return
        index = os.path.join(full, "index.html")
        try:
            ist = os.stat(index)
            if not stat.S_ISDIR(ist.st_mode):
                full, st = index, ist
        except OSError:
            pass
    elif url_path.endswith("/"):
        _local_redirect(w, r, "../" + os.path.basename(url_path.rstrip("/")))
        return
    if stat.S_ISDIR(st.st_mode):
        try:
            entries = sorted(os.scandir(full), key=lambda e: e.name)
        except OSError:
            gohttp.http_error(w, "Error reading directory", 500)
            return
        w.header.set("Content-Type", "text/html; charset=utf-8")
        w.write('<!doctype html>\n<meta name="viewport" content="width=device-width">\n<pre>\n')
        for entry in entries:
            label = entry.name + ("/" if entry.is_dir() else "")
            w.write(f'<a href="{escape_path(label)}">{_html(label)}</a>\n')
        w.write("</pre>\n")
        return
    try:
        with open(full, "rb") as f:
            data = f.read()
    except OSError as err:
        _not_found(w, err)
        return
    w.header.set("Last-Modified", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(st.st_mtime)))
    ext = os.path.splitext(full)[1].lower()
    ctype = _GO_TYPES.get(ext)
    if ctype is None and ext:
        import mimetypes  # deferred: only for extensions Go's table lacks; it reads the system's types
        ctype = mimetypes.types_map.get(ext)
    w.header.set("Content-Type", ctype or gohttp.sniff(data))
    w.header.set("Accept-Ranges", "bytes")
    w.header.set("Content-Length", str(len(data)))
    w.write(data)


def run(name: str, opts: dict, args: list[str]) -> int:
    die_on_sigint()

    def handler(w: gohttp.ResponseWriter, r: gohttp.Request) -> None:
        w.header.set("Cache-Control", "private")
        w.header.set("Access-Control-Allow-Origin", "*")
        w.header.set("Access-Control-Allow-Credentials", "true")
        w.header.set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        w.header.set("Access-Control-Allow-Headers",
                     "DNT,X-Mx-ReqToken,Keep-Alive,User-Agent,X-Requested-With,Cache-Control,Content-Type")
        r.header.delete("If-Modified-Since")
        if not r.path.startswith("/"):
            gohttp.http_error(w, "404 page not found", 404)
            return
        serve_file(w, r, r.path)  # StripPrefix("/") then FileServer re-adds the leading "/"

    mux = gohttp.ServeMux()
    mux.handle("/", handler)
    try:
        sock = gohttp.listen_tcp(bind_address(), opts["port"])
    except GoError as err:
        fatal(str(err))
    gohttp.Server(sock, mux).serve_forever()
    return 0
