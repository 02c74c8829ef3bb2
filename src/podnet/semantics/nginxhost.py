"""Whether nginx accepts a request's Host header, and the host it routes by.

nginx reads the Host before choosing a server (ngx_http_request.c: ngx_http_process_host,
ngx_http_validate_host, ngx_http_process_request_header). An HTTP/1.1 request without Host, with
two, or with one nginx cannot read is answered 400 Bad Request by nginx itself, before any
ingress-nginx server or location sees it. What passes is lower-cased, loses its `:port` and a
trailing dot, and is the name `server_name` matching uses (semantics/ingress.py does that part).
"""

from __future__ import annotations

_DECLINED = "client sent invalid host header"


def host_header_problem(values: list[str]) -> str | None:
    """nginx's reason for answering 400 to an HTTP/1.1 request with these Host headers, or None."""
    if not values:
        return 'client sent HTTP/1.1 request without "Host" header'
    if len(values) > 1:
        return "client sent duplicate host header"
    return None if valid_host(values[0]) else f"{_DECLINED} {values[0]!r}"


def valid_host(host: str) -> bool:
    """ngx_http_validate_host: no `..`, no `/` or `\\`, no control characters or spaces, and
    something left once the port and a trailing dot are cut off."""
    dot_at = -2
    host_len = len(host)
    state = "usual"
    for i, ch in enumerate(host):
        if ch == ".":
            if dot_at == i - 1:
                return False
            dot_at = i
        elif ch == ":":
            if state == "usual":
                host_len, state = i, "rest"
        elif ch == "[":
            if i == 0:
                state = "literal"
        elif ch == "]":
            if state == "literal":
                host_len, state = i + 1, "rest"
        elif ch in "/\\" or ord(ch) <= 0x20 or ord(ch) == 0x7F:
            return False
    if dot_at == host_len - 1:
        host_len -= 1
    return host_len > 0
