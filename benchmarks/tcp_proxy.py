"""A loopback TCP proxy that can cut the line: the fault suite puts it in front of PostgreSQL
so a database outage is simulated without touching the shared server.

``cut()`` drops every open connection (as a crashed server or a failed-over address does) and
refuses new ones until ``restore()``.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
import subprocess
import sys
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self.dropped = 0  # connections cut while open
        self.refused = 0  # connections refused while cut
        self._running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            doomed, self._open = self._open, set()
        self.dropped += len(doomed) // 2  # both ends of each connection
        for sock in doomed:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._running = False
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut
            if cut:
                self.refused += 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                _close(client)  # RST, as a refused connection looks to the driver
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class ProxyProcess:
    """The proxy in a process of its own, so its copying does not share the load's GIL.

    SIGUSR1 cuts, SIGUSR2 restores; on SIGTERM it prints its counters and exits.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.tcp_proxy", target_host, str(target_port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.dropped = self.refused = 0

    def cut(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def restore(self) -> None:
        self.proc.send_signal(signal.SIGUSR2)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=10)
            self.dropped, self.refused = (int(n) for n in out.split())


def main() -> None:
    proxy = TcpProxy(sys.argv[1], int(sys.argv[2]))
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: proxy.cut())
    signal.signal(signal.SIGUSR2, lambda *_: proxy.restore())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(proxy.port, flush=True)
    while not stop.wait(0.2):
        pass
    refused = proxy.refused
    proxy.close()
    print(proxy.dropped, refused, flush=True)


if __name__ == "__main__":
    main()
