"""Dormouse as real processes (API under uvicorn, Celery workers, beat) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from twilio.request_validator import RequestValidator

from tests.conftest import ACCOUNT_SID, API_KEY, AUTH_TOKEN, FROM_NUMBER, Backend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Stack:
    def __init__(self, backend: Backend, workdir: Path, twilio_url: str, **env: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "MODEL_"))},
            "DATA_DIR": str(workdir),
            "DATABASE_URL": backend.database_url,
            "BROKER_URL": backend.broker_url,
            "PUBLIC_URL": self.base,
            "DORMOUSE_API_KEYS": f"tests:{API_KEY}",
            "EMAIL_INBOUND_SECRET": "e2e-inbound-secret",
            "CHAT_WEBHOOK_SECRET": "whsec_ZTJlLWNoYXQtd2ViaG9vay1zZWNyZXQtMDEyMzQ1Njc=",
            "CONSOLE_SECRET": "e2e-console-secret",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_API_URL": twilio_url,
            "TWILIO_HTTP_TIMEOUT": "2",
            "REDRIVE_INTERVAL": "1",
            "LEASE_SECONDS": "4",
            "TURN_TIME_LIMIT": "3",
            "MODEL_TIMEOUT": "2",
            "DELIVERY_RECONCILE_AFTER": "2",
            "DELIVERY_BACKOFF_BASE": "0.5",
            "WEBHOOK_ALLOW_PRIVATE": "true",  # receivers on 127.0.0.1
            **env,
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill -9 takes pool children too
        )
        self.processes[name] = proc
        return proc

    def start(self, workers: int = 1, pool: str = "prefork") -> Stack:
        self.spawn("api", "api", "--port", str(self.port))
        for i in range(workers):
            self.start_worker(f"worker{i}", pool)
        self.spawn("beat", "beat")
        wait_until(self._healthy, 30, "the API to answer /healthz")
        return self

    def start_worker(self, name: str, pool: str = "prefork") -> None:
        args = ["worker", "--pool", pool, "--concurrency", "1" if pool == "solo" else "2"]
        self.spawn(name, *args, "--hostname", f"{name}-{uuid.uuid4().hex[:6]}@e2e")

    def kill9(self, name: str) -> None:
        proc = self.processes.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n" + p.read_text(errors="replace")[-3000:]
            for p in sorted(self.workdir.glob("*.log"))
        )

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    # --- as Twilio and as an operator -----------------------------------------------------

    def text(
        self,
        body: str,
        sender: str,
        sid: str | None = None,
        client: httpx.Client | None = None,
        to: str = FROM_NUMBER,
    ) -> httpx.Response:
        url = self.base + "/webhooks/twilio/sms"
        form = {
            "MessageSid": sid or "SM" + uuid.uuid4().hex,
            "AccountSid": ACCOUNT_SID,
            "From": sender,
            "To": to,
            "Body": body,
            "NumMedia": "0",
        }
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
        post = client.post if client is not None else httpx.post  # a load keeps its connections
        return post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)

    def get(self, path: str, **params: str) -> Any:
        response = httpx.get(
            self.base + path, params=params, headers={"Authorization": f"Bearer {API_KEY}"}
        )
        response.raise_for_status()
        return response.json()

    def conversations(self, address: str) -> list[dict[str, Any]]:
        return self.get("/v1/conversations", address=address)  # type: ignore[no-any-return]

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        return self.get(f"/v1/conversations/{conversation_id}")  # type: ignore[no-any-return]
