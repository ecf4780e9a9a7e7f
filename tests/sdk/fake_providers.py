"""A local HTTP server speaking just enough of the OpenAI and Anthropic APIs for the real
client libraries: JSON responses, SSE streams, and errors chosen by the requested model."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# model name -> (HTTP status, error type) to make the server fail on purpose
FAILING_MODELS = {"fail-500": (500, "api_error"), "fail-429": (429, "rate_limit_error")}
SLOW_MODEL = "slow"
# a server that refuses request fields it does not know (some OpenAI-compatible servers do)
STRICT_MODEL = "strict"
STRICT_KNOWN_FIELDS = {"model", "messages", "stream", "max_tokens", "temperature"}
FIRST_TOKEN_DELAY_S = 0.05


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def _json(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _sse(self, events: list[tuple[str | None, dict | str]]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for i, (name, data) in enumerate(events):
            if i == 1:
                time.sleep(FIRST_TOKEN_DELAY_S)
            text = data if isinstance(data, str) else json.dumps(data)
            chunk = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
            self.wfile.write(chunk.encode())
            self.wfile.flush()
        self.close_connection = True

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        self.server.requests.append((self.path, body))
        model = body.get("model", "")
        if model == SLOW_MODEL:
            time.sleep(1.0)
        if model == STRICT_MODEL and set(body) - STRICT_KNOWN_FIELDS:
            unknown = ", ".join(sorted(set(body) - STRICT_KNOWN_FIELDS))
            return self._json(400, {"error": {"type": "invalid_request_error",
                                              "message": f"unknown field(s): {unknown}"}})
        if model in FAILING_MODELS:
            status, kind = FAILING_MODELS[model]
            return self._json(status, {"type": "error", "error": {"type": kind, "message": "boom"}})
        if self.path.endswith("/chat/completions"):
            return self._openai(body)
        if self.path.endswith("/messages"):
            return self._anthropic(body)
        self._json(404, {"error": {"message": "no such path"}})

    def _openai(self, body: dict) -> None:
        model = body["model"]
        refused = model == "refuse"
        if not body.get("stream"):
            return self._json(200, {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": model + "-2024",
                "choices": [{"index": 0, "finish_reason": "content_filter" if refused else "stop",
                             "message": {"role": "assistant", "content": "Hello there",
                                         "refusal": "no" if refused else None}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            })
        base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1700000000, "model": model + "-2024"}
        events = [(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
        for word in ("Hel", "lo", "!"):
            events.append((None, {**base, "choices": [{"index": 0, "delta": {"content": word}}]}))
        events.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append((None, {**base, "choices": [],
                                  "usage": {"prompt_tokens": 13, "completion_tokens": 3, "total_tokens": 16}}))
        events.append((None, "[DONE]"))
        self._sse(events)

    def _anthropic(self, body: dict) -> None:
        model = body["model"]
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": "Hi!"}],
                   "stop_reason": "refusal" if model == "refuse" else "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": 21, "output_tokens": 9}}
        if not body.get("stream"):
            return self._json(200, message)
        start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 21, "output_tokens": 1}}
        self._sse([
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "Hi"}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "!"}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": 9}}),
            ("message_stop", {"type": "message_stop"}),
        ])


class FakeProviders:
    """``with FakeProviders() as srv: openai.OpenAI(base_url=srv.openai_url, ...)``"""

    def __enter__(self) -> "FakeProviders":
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.requests = []
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        host, port = self.server.server_address
        self.base = f"http://{host}:{port}"
        self.openai_url = self.base + "/v1"
        self.anthropic_url = self.base
        return self

    @property
    def requests(self) -> list:
        return self.server.requests

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
