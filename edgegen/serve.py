"""`edgegen serve`: an OpenAI-compatible HTTP server for one model (Starlette + uvicorn, the `serve` extra).

One model generates one sequence at a time, so requests take turns: every generation runs on one worker
thread, a bounded number wait (503 with Retry-After beyond that), and a client that disconnects mid-stream
has its generation closed at once, which frees the model for the next request.
"""
import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .runtime import EdgegenError
from .runtime.options import OPTION_FIELDS
from .runtime.tools import openai_tool_calls

# OpenAI fields edgegen has no equivalent for yet: refused rather than silently ignored
UNSUPPORTED = {"functions": "functions is deprecated by OpenAI; use tools",
               "function_call": "function_call is deprecated by OpenAI; use tool_choice",
               "logprobs": "log-probabilities are not returned",
               "top_logprobs": "log-probabilities are not returned", "logit_bias": "logit_bias is not supported",
               "presence_penalty": "penalties are not supported", "frequency_penalty": "penalties are not supported",
               "audio": "audio is not supported", "modalities": "only text is supported",
               "prediction": "predicted outputs are not supported"}
HARMLESS = {"model", "user", "metadata", "store", "service_tier", "parallel_tool_calls", "stream", "stream_options",
            "n", "messages", "prompt", "rag", "tools", "tool_choice"}
OPENAI_NAMES = {"max_tokens": "max_new_tokens", "max_completion_tokens": "max_new_tokens"}
EXTRA = {name for name in OPTION_FIELDS if name not in ("max_new_tokens",)}  # edgegen's own knobs, via extra_body


class RequestError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.kind, self.param, self.headers = status, kind, param, headers or {}


def generation_options(body: dict) -> dict:
    """Generation options from an OpenAI request body; unsupported fields are errors, never ignored."""
    options = {}
    for name, value in body.items():
        if name in UNSUPPORTED and value not in (None, False, 0, [], {}):
            raise RequestError(400, f"{name}: {UNSUPPORTED[name]} in edgegen", param=name)
        if name in OPENAI_NAMES and value is not None:
            options[OPENAI_NAMES[name]] = value
        elif name in EXTRA and value is not None:
            options[name] = value
        elif name not in HARMLESS and name not in UNSUPPORTED:
            raise RequestError(400, f"unknown field {name!r}", param=name)
    if body.get("n", 1) != 1:
        raise RequestError(400, "n: edgegen returns one choice per request", param="n")
    return options


def chat_messages(body: dict) -> list[dict]:
    """The messages as chat templates take them: text content, and calls' arguments as objects, not JSON text."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list", param="messages")
    plain = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: only text ones
            if any(not isinstance(part, dict) or part.get("type") != "text" for part in content):
                raise RequestError(400, "only text content parts are supported", param="messages")
            content = "".join(part.get("text", "") for part in content)
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if content is None and calls:  # an assistant turn that only called tools
            content = ""
        if not isinstance(content, str) or not isinstance(message.get("role"), str):
            raise RequestError(400, "each message needs a role and text content", param="messages")
        plain.append({"role": message["role"], "content": content,
                      **{key: message[key] for key in ("tool_call_id", "name") if isinstance(message.get(key), str)},
                      **({"tool_calls": template_calls(calls)} if calls else {})})
    return plain


def template_calls(calls) -> list[dict]:
    try:
        return [{**call, "function": {"name": call["function"]["name"],
                                      "arguments": json.loads(call["function"]["arguments"])}} for call in calls]
    except (TypeError, KeyError, ValueError):
        raise RequestError(400, 'an assistant message\'s tool_calls must be like [{"id": ..., "type": "function", '
                                '"function": {"name": ..., "arguments": "JSON text"}}]', param="messages") from None


class Metrics:
    def __init__(self):
        self.requests = self.cancelled = self.prompt_tokens = self.completion_tokens = self.decoded_tokens = 0
        self.forwards = 0
        self.decode_seconds = 0.0

    def record(self, result) -> None:
        stats = result.stats
        self.requests += 1
        self.prompt_tokens += stats.prompt_tokens
        self.completion_tokens += stats.new_tokens
        self.decoded_tokens += stats.decoded_tokens
        self.forwards += stats.forwards
        self.decode_seconds += stats.total_ms / 1000

    def text(self, queue_depth: int) -> str:
        values = {"edgegen_requests_total": self.requests, "edgegen_cancelled_total": self.cancelled,
                  "edgegen_prompt_tokens_total": self.prompt_tokens,
                  "edgegen_completion_tokens_total": self.completion_tokens,
                  "edgegen_tokens_per_second":
                      self.completion_tokens / self.decode_seconds if self.decode_seconds else 0,
                  "edgegen_tokens_per_forward": self.decoded_tokens / self.forwards if self.forwards else 0,
                  "edgegen_queue_depth": queue_depth}
        return "".join(f"# TYPE {name} {'counter' if name.endswith('_total') else 'gauge'}\n{name} {value}\n"
                       for name, value in values.items())


class Server:
    def __init__(self, model, name: str, api_key: str | None, max_queue: int, rag=None):
        """`rag`: (store, compressor) when started with --rag, for requests that ask for retrieval."""
        self.model, self.name, self.api_key, self.max_queue, self.rag = model, name, api_key, max_queue, rag
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="edgegen-model")  # every generation runs here
        self.turn = asyncio.Lock()  # binds to the server's event loop on first use
        self.waiting = 0  # requests running or queued
        self.metrics = Metrics()

    async def on_model_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.worker, function, *args)

    def check_key(self, request) -> None:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise RequestError(401, "missing or wrong API key (Authorization: Bearer KEY)", "authentication_error")

    def admit(self) -> None:
        if self.waiting > self.max_queue:
            raise RequestError(503, f"the model is busy and {self.max_queue} request(s) already wait; retry shortly",
                               "server_busy", headers={"Retry-After": "1"})

    def rag_prompt(self, request: dict, messages: list[dict], options: dict) -> list:
        """The latent-RAG prompt for the last user message, as `edgegen rag ask` builds it."""
        from .runtime.rag import RAG_MAX_NEW_TOKENS, retrieve

        if self.rag is None:
            raise RequestError(400, "this server has no latent store: start it with --rag STORE", param="rag")
        if not isinstance(request, dict) or not isinstance(request.get("k", 5), int) or request.get("k", 5) < 1:
            raise RequestError(400, 'rag must be an object like {"k": 5} (k: whole number >= 1)', param="rag")
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
        if not question:
            raise RequestError(400, "rag needs a user message to answer", param="messages")
        options.setdefault("max_new_tokens", RAG_MAX_NEW_TOKENS)
        store, compressor = self.rag
        return retrieve(question, store, self.model, compressor, request.get("k", 5))[0]

    async def generate(self, prompt, options: dict, stream: bool, make_chunk, make_response, include_usage: bool,
                       **tools):
        """Run one generation in turn; a JSON response, or an SSE stream of chunks ending in [DONE]. Everything
        about the request (options, grammar, prompt length) is checked before the response starts."""
        from starlette.responses import JSONResponse, StreamingResponse

        generation = await asyncio.to_thread(lambda: self.model.stream(prompt, **tools, **options))
        self.admit()
        self.waiting += 1
        if not stream:
            try:
                async with self.turn:
                    result = await self.on_model_thread(generation.run)
            finally:
                self.waiting -= 1
            self.metrics.record(result)
            return JSONResponse(make_response(result))

        async def events():
            import anyio

            try:
                async with self.turn:
                    yield sse(make_chunk(None, None, first=True))
                    while (piece := await self.on_model_thread(next, generation, None)) is not None:
                        yield sse(make_chunk(piece, None))
                    result = generation.result
                    self.metrics.record(result)
                    if result.tool_calls:
                        yield sse(make_chunk(None, None, calls=result.tool_calls))
                    yield sse(make_chunk("", result))
                    if include_usage:
                        yield sse(make_chunk(None, result, usage_only=True))
                    yield "data: [DONE]\n\n"
            finally:
                self.waiting -= 1
                if generation.result is None:
                    with anyio.CancelScope(shield=True):  # the client left: stop now and free the model
                        await self.on_model_thread(generation.close)
                    self.metrics.cancelled += 1

        return StreamingResponse(events(), media_type="text/event-stream")


def sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def usage(result) -> dict:
    s = result.stats
    return {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.new_tokens,
            "total_tokens": s.prompt_tokens + s.new_tokens,
            "prompt_tokens_details": {"cached_tokens": s.cached_prompt_tokens}}


FINISH = {"eos": "stop", "stop": "stop", "max_new_tokens": "length", "context_full": "length", "cancelled": "stop"}


def finish_reason(result) -> str:
    return "tool_calls" if result.tool_calls else FINISH[result.stop_reason]


def build_app(server: Server):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    def failure(error: RequestError) -> JSONResponse:
        return JSONResponse({"error": {"message": str(error), "type": error.kind, "param": error.param,
                                       "code": None}}, status_code=error.status, headers=error.headers)

    async def read_body(request) -> dict:
        server.check_key(request)
        try:
            body = await request.json()
        except ValueError:
            raise RequestError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        return body

    def handler(endpoint):
        async def handle(request):
            try:
                return await endpoint(request)
            except RequestError as e:
                return failure(e)
            except EdgegenError as e:  # the runtime's own checks: bad option values, a prompt too long
                return failure(RequestError(400, str(e)))
        return handle

    async def chat_completions(request):
        body = await read_body(request)
        messages, options = chat_messages(body), generation_options(body)
        prompt = messages if body.get("rag") in (None, False) else \
            await server.on_model_thread(server.rag_prompt, body["rag"], messages, options)
        stream, include_usage = bool(body.get("stream")), bool((body.get("stream_options") or {}).get("include_usage"))
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def response(result) -> dict:
            message = {"role": "assistant", "content": result.text}
            if result.tool_calls:
                message.update(content=result.text or None, tool_calls=openai_tool_calls(result.tool_calls))
            return {"id": rid, "object": "chat.completion", "created": created, "model": server.name,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(result)}],
                    "usage": usage(result)}

        def chunk(piece, result, first=False, usage_only=False, calls=None) -> dict:
            base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": server.name}
            if usage_only:
                return {**base, "choices": [], "usage": usage(result)}
            delta = {"role": "assistant", "content": ""} if first else {"content": piece} if piece else {}
            if calls:
                delta = {"tool_calls": [{"index": i, **call} for i, call in enumerate(openai_tool_calls(calls))]}
            return {**base, "choices": [{"index": 0, "delta": delta,
                                         "finish_reason": finish_reason(result) if result else None}]}

        tools = {"tools": body.get("tools") or None, "tool_choice": body.get("tool_choice") or "auto"}
        return await server.generate(prompt, options, stream, chunk, response, include_usage, **tools)

    async def completions(request):
        body = await read_body(request)
        prompt, options = body.get("prompt"), generation_options(body)
        if not isinstance(prompt, str) or not prompt:
            raise RequestError(400, "prompt must be a non-empty string", param="prompt")
        stream, include_usage = bool(body.get("stream")), bool((body.get("stream_options") or {}).get("include_usage"))
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        def response(result) -> dict:
            return {"id": rid, "object": "text_completion", "created": created, "model": server.name,
                    "choices": [{"index": 0, "text": result.text, "finish_reason": FINISH[result.stop_reason],
                                 "logprobs": None}], "usage": usage(result)}

        def chunk(piece, result, first=False, usage_only=False) -> dict:
            base = {"id": rid, "object": "text_completion", "created": created, "model": server.name}
            if usage_only:
                return {**base, "choices": [], "usage": usage(result)}
            return {**base, "choices": [{"index": 0, "text": piece or "", "logprobs": None,
                                         "finish_reason": FINISH[result.stop_reason] if result else None}]}

        return await server.generate(prompt, options, stream, chunk, response, include_usage)

    async def models(request):
        server.check_key(request)
        return JSONResponse({"object": "list", "data": [{"id": server.name, "object": "model", "created": 0,
                                                         "owned_by": "edgegen"}]})

    async def health(request):
        return JSONResponse({"status": "ok", "model": server.name})

    async def metrics(request):
        return PlainTextResponse(server.metrics.text(server.waiting), media_type="text/plain; version=0.0.4")

    routes = [Route("/v1/chat/completions", handler(chat_completions), methods=["POST"]),
              Route("/v1/completions", handler(completions), methods=["POST"]),
              Route("/v1/models", handler(models), methods=["GET"]),
              Route("/health", health, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]
    return Starlette(routes=routes)


def run_serve(args) -> int:
    try:
        import uvicorn
    except ImportError:
        raise EdgegenError("`edgegen serve` needs the serve extra: pip install -e '.[serve]'") from None
    from . import load

    if args.rag:
        from .models import RAG_GENERATOR
        from .runtime.compressor import Compressor
        from .runtime.latent_store import LatentStore

        store = LatentStore.open(args.rag)
        compressor_dir = args.rag_compressor or store.info.get("compressor_path")
        if not compressor_dir:
            raise EdgegenError("the store does not say where its compressor is; pass --rag-compressor DIR")
        rag = (store, Compressor(compressor_dir, provider=args.provider))
    model = load(args.model or (RAG_GENERATOR if args.rag else None), provider=args.provider,
                 max_context=args.max_context, threads=args.threads, prompt_cache=args.prompt_cache)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"edgegen: warning: serving on {args.host} without --api-key: anyone who can reach this port can use "
              "the model", file=sys.stderr)
    server = Server(model, args.name or model.path.name, args.api_key, args.max_queue, rag if args.rag else None)
    print(f"edgegen serve · {server.name} on http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(build_app(server), host=args.host, port=args.port, log_level="warning")
    return 0


def add_serve(commands, add_model_options, whole_number) -> None:
    p = commands.add_parser("serve", help="an OpenAI-compatible HTTP server for a model",
                            description="Serve MODEL over the OpenAI API (/v1/chat/completions, /v1/completions, "
                                        "/v1/models, /health, /metrics). Requests take turns on the one model.")
    add_model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=whole_number(1, 65535), default=8080)
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every /v1 request")
    p.add_argument("--max-queue", type=whole_number(0), default=8,
                   help="requests that may wait while one runs; beyond them, 503 with Retry-After (default 8)")
    p.add_argument("--name", help="the model id clients see (default: the model directory's name)")
    p.add_argument("--rag", type=Path, metavar="STORE",
                   help='a latent store: chat requests with "rag": {"k": 5} in the body answer from it, as `edgegen '
                        'rag ask` does (MODEL then defaults to the bundled latent-RAG generator)')
    p.add_argument("--rag-compressor", type=Path, help="default: the compressor the store was indexed with")
    p.set_defaults(run=run_serve)


def spawn(*args, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """Start `edgegen serve ARGS` in a subprocess on a free local port; returns it and its base URL once /health
    answers (for tests, benchmarks and apps that run the server beside them)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "edgegen", "serve", "--port", str(port), *map(str, args)],
                               stderr=subprocess.PIPE, text=True)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return process, url
        except OSError:
            if process.poll() is not None:
                raise EdgegenError(f"edgegen serve exited: {process.stderr.read()[-2000:]}") from None
            time.sleep(0.2)
    process.kill()
    raise EdgegenError(f"edgegen serve did not answer on {url} within {timeout} s")
