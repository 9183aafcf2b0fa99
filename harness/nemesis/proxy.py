"""A TCP proxy the harness owns, so a fault can cut one worker's connection to Redis.

    proxy = TcpProxy("127.0.0.1", redis_port).start()   # workers use redis://127.0.0.1:<proxy.port>
    proxy.cut()        # every open connection is torn down, new ones are closed at once
    proxy.restore()    # connections are accepted and forwarded again
    proxy.hold_next_reply(b"EXEC", 2.5)   # the reply to the next request with EXEC comes 2.5 s late

A cut closes both sides of every connection: the client sees its socket reset or closed, and
Redis sees the client disconnect (it vanishes from ``CLIENT LIST``), as it would when a network
partition ends in TCP giving up. Plain threads, two per forwarded connection: a worker opens a
handful of connections, so this stays small and has no event loop to share with pytest.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

from harness.defaults import PROXY_BUFSIZE, PROXY_CONNECT_TIMEOUT_S

__all__ = ["ProxyStats", "TcpProxy"]


@dataclass
class ProxyStats:
    """What the proxy did, counted: a test reads it to see that a cut really cut."""

    accepted: int = 0  # connections forwarded
    refused: int = 0  # connections closed at once because the proxy was cut
    cuts: int = 0  # times cut() tore connections down
    severed: int = 0  # connections torn down by cut()
    held: int = 0  # replies hold_next_reply() delayed
    requests: int = 0  # client -> Redis sends (about one per round trip: a pipeline is one send)


def _hard_close(sock: socket.socket) -> None:
    """Close with RST (linger 0) so the peer notices at once, not after a FIN handshake."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(sock)


def _close(sock: socket.socket) -> None:
    """Shut down, which wakes a thread blocked in recv() on this socket, and close."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class TcpProxy:
    """Forward 127.0.0.1:<port> to target_host:target_port until cut."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        port: int = 0,
        name: str = "proxy",
        connect_timeout: float = PROXY_CONNECT_TIMEOUT_S,
    ) -> None:
        self.target = (target_host, int(target_port))
        self.name = name
        self.connect_timeout = connect_timeout
        self._listen_addr = (listen_host, port)
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._cut = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._armed: tuple[bytes, float] | None = None  # hold_next_reply(marker, seconds)
        self._holds: dict[tuple[socket.socket, socket.socket], float] = {}
        self.stats = ProxyStats()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(self._listen_addr)
        listener.listen(128)
        listener.settimeout(0.2)  # so stop() is noticed
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        self._sever_all()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._listen_addr[0]

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._listener.getsockname()[1])

    # -- faults -------------------------------------------------------------------------------

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> int:
        """Tear down every forwarded connection and refuse new ones; returns how many were cut."""
        with self._lock:
            self._cut = True
            self.stats.cuts += 1
        return self._sever_all()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def hold_next_reply(self, marker: bytes, seconds: float) -> None:
        """Hold the reply to the next request that contains `marker` (b"EXEC") for `seconds`: a
        slow network or a slow server, as the client sees it (its read times out first)."""
        with self._lock:
            self._armed = (marker, seconds)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    # -- internals ----------------------------------------------------------------------------

    def _sever_all(self) -> int:
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
            self.stats.severed += len(pairs)
        for a, b in pairs:
            _hard_close(a)
            _hard_close(b)
        return len(pairs)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed
            with self._lock:
                cut = self._cut
                if cut:
                    self.stats.refused += 1
            if cut:
                _hard_close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
                upstream.settimeout(None)
            except OSError:
                _hard_close(client)
                continue
            client.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                if self._cut or self._stopped.is_set():  # cut while we were connecting
                    self.stats.refused += 1
                    _hard_close(client)
                    _hard_close(upstream)
                    continue
                self._pairs.add(pair)
                self.stats.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst, pair), name=f"{self.name}-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket]) -> None:
        upstream = src is pair[0]  # client -> Redis
        try:
            while True:
                data = src.recv(PROXY_BUFSIZE)
                if not data:
                    break
                with self._lock:
                    self.stats.requests += upstream
                    if upstream and self._armed is not None and self._armed[0] in data:
                        self._holds[pair] = self._armed[1]  # the reply to this request waits
                        self._armed = None
                    hold = 0.0 if upstream else self._holds.pop(pair, 0.0)
                if hold:
                    with self._lock:
                        self.stats.held += 1
                    self._stopped.wait(hold)
                dst.sendall(data)
        except OSError:
            pass
        # One direction ended: end the connection as a whole (Redis has no half-closed use).
        with self._lock:
            owned = pair in self._pairs
            self._pairs.discard(pair)
        if owned:
            for sock in pair:
                _close(sock)
