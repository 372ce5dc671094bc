"""A local OpenAI-compatible chat completions server: scripted, slow on demand, observable.

It answers "ack: <the customer's last message>", or, when it is offered a ``lookup_order``
tool and the customer names an order ("A-1001"), calls that tool first (a real tool call)
and answers "ack: <what the tool returned>". Given a ``tool_plan``, it calls those tools one
per request (the n-th after n tool results), then answers "ack: <the last tool's result>".
``drop`` names requests (1-based) whose connection it closes without an answer, as a model
server that goes away mid-call; ``delays`` gives some requests a delay of their own;
``answered`` counts the completions it sent (what is billed); ``cancelled`` the requests
whose client hung up while it was still working on them. With ``answer_all`` its answer
names every customer message after its last answer ("ack: one / two"), so a test sees which
messages one answer addressed.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from tests.fakes.local_http import LocalHttpFake


@dataclass
class FakeModel(LocalHttpFake):
    path: ClassVar[str] = "/v1"
    delay: float = 0.0  # seconds every completion takes
    requests: list[dict[str, object]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    tool_plan: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    drop: set[int] = field(default_factory=set)
    delays: dict[int, float] = field(default_factory=dict)  # seconds, by request (1-based)
    answered: int = 0
    cancelled: int = 0
    answer_all: bool = False

    def wait_for_requests(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"expected {count} model request(s), got {len(self.requests)}")

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        if req.path != "/v1/chat/completions":
            req.send_response(404)
            req.end_headers()
            return
        body = json.loads(req.rfile.read(int(req.headers.get("Content-Length") or 0)))
        with self.lock:
            self.requests.append(body)
            dropped = len(self.requests) in self.drop
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            delay = self.delays.get(len(self.requests), self.delay)
        try:
            if self._hung_up_within(req, delay):
                with self.lock:
                    self.cancelled += 1
                return
            if dropped:
                req.close_connection = True  # no answer: the client sees the server go away
                return
            reply = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, **_answer(body, self.tool_plan, self.answer_all)}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }
            data = json.dumps(reply).encode()
            with self.lock:  # counted before it is sent: a test reading it after the turn sees it
                self.answered += 1
            req.send_response(200)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self.lock:
                self.in_flight -= 1

    @staticmethod
    def _hung_up_within(req: BaseHTTPRequestHandler, seconds: float) -> bool:
        """Wait ``seconds``; True as soon as the client closes its connection (a cancelled
        request: the socket reads as end of file)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([req.connection], [], [], min(left, 0.05))
            if readable and req.connection.recv(1, socket.MSG_PEEK) == b"":
                return True
        return False


ORDER = re.compile(r"\b([A-Z]-\d{4})\b", re.IGNORECASE)


def _answer(
    body: dict[str, Any], plan: list[tuple[str, dict[str, Any]]], answer_all: bool = False
) -> dict[str, Any]:
    messages = body["messages"]
    last = messages[-1]
    done = len([m for m in messages if m["role"] == "tool"])
    if done < len(plan):
        name, arguments = plan[done]
        call = {
            "id": f"call_{done}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        return {
            "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": None, "tool_calls": [call]},
        }
    if last["role"] == "tool":
        text = f"ack: {last['content']}"
        return {"finish_reason": "stop", "message": {"role": "assistant", "content": text}}
    users = [m["content"] for m in messages if m["role"] == "user"]
    offered = {t["function"]["name"] for t in body.get("tools", [])}
    order = ORDER.search(str(users[-1]))
    if "lookup_order" in offered and order:
        call = {
            "id": f"call_{len(messages)}",
            "type": "function",
            "function": {
                "name": "lookup_order",
                "arguments": json.dumps({"order_id": order.group(1)}),
            },
        }
        return {
            "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": None, "tool_calls": [call]},
        }
    text = f"ack: {users[-1]}"
    if answer_all:
        answered = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
        unanswered = [m["content"] for m in messages[answered + 1 :] if m["role"] == "user"]
        text = "ack: " + " / ".join(str(u) for u in unanswered)
    return {"finish_reason": "stop", "message": {"role": "assistant", "content": text}}
