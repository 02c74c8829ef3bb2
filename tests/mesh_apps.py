"""Small apps the mesh's root tests run in pods: a server that speaks first, as a database's
handshake does, and its client."""

from __future__ import annotations

import textwrap

# `python3 -c TALKER PORT NAME`: greets each client ("220 NAME from ADDRESS"), then echoes what the
# client says; "ready" once it listens
TALKER = textwrap.dedent("""
    import socket, sys, threading
    port, name = int(sys.argv[1]), sys.argv[2]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(16)
    print("ready", flush=True)
    def serve(conn, peer):
        try:
            conn.settimeout(10)
            conn.sendall(f"220 {name} from {peer[0]}\\n".encode())
            conn.sendall(b"echo " + conn.recv(100))
        except OSError:
            pass
        conn.close()
    while True:
        threading.Thread(target=serve, args=listener.accept(), daemon=True).start()
""")
# `python3 -c TALK ADDRESS PORT`: "GREETING | REPLY" (either "closed" if there was none)
TALK = textwrap.dedent("""
    import socket, sys
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
    s.settimeout(20)
    greeting = s.recv(200).decode().strip() or "closed"
    try:
        s.sendall(b"ping\\n")
        reply = s.recv(200).decode().strip() or "closed"
    except OSError:
        reply = "closed"
    print(f"{greeting} | {reply}")
""")
