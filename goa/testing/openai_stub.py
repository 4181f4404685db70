"""A stand-in OpenAI-compatible server on loopback, for tests and benchmarks.

It answers ``POST /v1/chat/completions`` with a fixed reply (or one computed
from the request), streamed as server-sent events word by word when the
request asks for ``stream``, and ``GET /v1/models`` with one model, instantly. It runs in
a background thread; use it as a context manager::

    with OpenAIStubServer(reply="4") as server:
        backend = LiteLLMBackend("openai/stub", api_base=server.base_url)
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

ReplyFn = Callable[[dict[str, Any]], str]


class OpenAIStubServer:
    """A tiny OpenAI-compatible server bound to 127.0.0.1 on a free port."""

    def __init__(self, reply: str | ReplyFn = "ok", *, model: str = "stub") -> None:
        self._reply = reply
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIStubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIStubServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        text = self._reply(body) if callable(self._reply) else self._reply
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion_tokens = len(text.split())
        return {
            "id": f"chatcmpl-stub-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, {"object": "list", "data": [{"id": stub.model, "object": "model"}]}
                    )
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "body is not JSON"}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                answer = stub._answer(body)
                if body.get("stream"):
                    self._send_stream(answer, body)
                else:
                    self._send(200, answer)

            def _send_stream(self, answer: dict[str, Any], body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                text = answer["choices"][0]["message"]["content"]
                pieces = re.findall(r"\S+\s*|\s+", text) or [""]
                base = {k: answer[k] for k in ("id", "created", "model")}
                for i, piece in enumerate(pieces):
                    last = i == len(pieces) - 1
                    choice = {
                        "index": 0,
                        "delta": {"role": "assistant", "content": piece}
                        if i == 0
                        else {"content": piece},
                        "finish_reason": "stop" if last else None,
                    }
                    self._event({**base, "object": "chat.completion.chunk", "choices": [choice]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    self._event(
                        {
                            **base,
                            "object": "chat.completion.chunk",
                            "choices": [],
                            "usage": answer["usage"],
                        }
                    )
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def _event(self, payload: dict[str, Any]) -> None:
                self.wfile.write(b"data: " + json.dumps(payload).encode("utf-8") + b"\n\n")
                self.wfile.flush()

        return Handler
