"""A TCP proxy on 127.0.0.1 whose link can be cut: a real network outage for a client of a real server.

`cut()` closes the listening socket and every open connection (clients see resets, then
refused connections); `restore()` listens on the same port again. `cut_mid_request(marker)`
arms a cut inside one HTTP request whose request line contains `marker` (a key): once its
head and half of its body have been forwarded, both sides are closed there, so the server
receives a torn upload and the client a reset, as when a node's network or the storage goes
away mid-PUT; a request without a body (a GET) is cut before it reaches the server.
`stall_at_request(marker)` instead stops all traffic at that request's head, connections
open and nothing answered (a storage brownout, a black-holed route), until `restore()`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass
from enum import StrEnum

_HEAD_END = b"\r\n\r\n"
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Fault(StrEnum):
    CUT = "cut"  # half-way through the body, then every connection reset and the port closed
    STALL = "stall"  # from the head on nothing moves either way; new connections hang too


@dataclass
class _Armed:
    marker: bytes
    fired: threading.Event
    fault: Fault


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._armed: _Armed | None = None
        self._flowing = threading.Event()  # cleared while stalled
        self._flowing.set()
        self.port = 0
        self.restore()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        """Let traffic flow; listen (again, on the same port once one was given)."""
        self._flowing.set()
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self.port = listener.getsockname()[1]
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                # RST rather than FIN: the peer sees a reset, not a clean end of the stream.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def cut_mid_request(self, marker: str) -> threading.Event:
        """Cut everything half-way through the next request whose request line holds marker;
        the event is set once it has happened."""
        armed = _Armed(marker.encode(), threading.Event(), Fault.CUT)
        self._armed = armed
        return armed.fired

    def stall_at_request(self, marker: str) -> threading.Event:
        """Stop all traffic when the next request whose request line holds marker arrives (its
        head is held back too); the event is set once it has happened."""
        armed = _Armed(marker.encode(), threading.Event(), Fault.STALL)
        self._armed = armed
        return armed.fired

    def close(self) -> None:
        self._flowing.set()  # lets held threads run into the closed sockets and end
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self._conns.update((client, server))
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                self._flowing.wait()
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server, request by request (Content-Length framing, as boto3 sends), watching
        for the armed one."""
        buf = b""
        body_left = 0  # of the current request's body
        budget: int | None = None  # bytes still forwarded before the armed cut
        fired = threading.Event()  # the armed cut's, once its request is seen

        def send(segment: bytes) -> bool:
            """Forward; True once the armed cut's budget is spent."""
            nonlocal budget
            self._flowing.wait()
            if budget is None:
                server.sendall(segment)
                return False
            server.sendall(segment[:budget])
            budget -= min(budget, len(segment))
            return budget == 0

        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                buf += chunk
                while buf:
                    if body_left:
                        segment, buf = buf[:body_left], buf[body_left:]
                        body_left -= len(segment)
                    else:
                        end = buf.find(_HEAD_END)
                        if end < 0:
                            break  # the rest of the head is still coming
                        segment, buf = buf[: end + len(_HEAD_END)], buf[end + len(_HEAD_END) :]
                        length = _LENGTH.search(segment)
                        body_left = int(length.group(1)) if length else 0
                        armed = self._armed
                        if armed is not None and armed.marker in segment.split(b"\r\n", 1)[0]:
                            self._armed = None
                            fired = armed.fired
                            if armed.fault is Fault.STALL:
                                self._flowing.clear()
                                fired.set()
                            elif body_left <= 1:  # nothing to tear: the request never arrives
                                self.cut()
                                fired.set()
                                return
                            else:
                                budget = len(segment) + body_left // 2
                    if send(segment):
                        self.cut()
                        fired.set()
                        return
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_WR)
