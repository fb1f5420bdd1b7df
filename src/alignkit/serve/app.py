"""The OpenAI-compatible routes: /v1/chat/completions, /v1/completions (streaming as server-sent events or
not), /v1/models, and /stats (the batcher's batch sizes, not an OpenAI route). Request fields are checked by
hand so every mistake answers as an OpenAI-style error body: 400 for a bad field, 404 for an unknown model.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from alignkit.rewards.judge_backends import chat_prompt_ids
from alignkit.serve.batcher import Batcher, Job

DEFAULT_MAX_TOKENS = 256
MAX_N = 16


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        code = "model_not_found" if self.status == 404 else None
        error = {"message": self.message, "type": kind, "param": self.param, "code": code}
        return JSONResponse({"error": error}, status_code=self.status)


def build_app(model_dir: str, max_batch: int = 16, model_name: str | None = None) -> FastAPI:
    from alignkit.eval.sampling import load_frozen

    model, tokenizer = load_frozen(model_dir)
    name = model_name or Path(model_dir).name
    context = getattr(model.config, "max_position_embeddings", None)
    batcher = Batcher(model, tokenizer, max_batch)
    app = FastAPI(title=f"alignkit serve {name}")
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def request_error(_request: Request, err: RequestError):
        return err.response()

    @app.get("/v1/models")
    async def models():
        model_card = {"id": name, "object": "model", "created": 0, "owned_by": "alignkit"}
        return {"object": "list", "data": [model_card]}

    @app.get("/stats")
    async def stats():
        return batcher.stats()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await read_body(request, name)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str) for m in messages):
            raise RequestError(400, "messages must be a non-empty list of {role: system|user|assistant, "
                                    "content: string}", "messages")
        try:
            turns = [{"role": m["role"], "content": m["content"]} for m in messages]
            prompt_ids = chat_prompt_ids(tokenizer, turns)
        except Exception as err:
            raise RequestError(400, f"the model's chat template refused these messages: {err}",
                               "messages") from None
        return await answer(body, prompt_ids, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_body(request, name)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise RequestError(400, "prompt must be a non-empty string (one prompt per request)", "prompt")
        return await answer(body, tokenizer(prompt, add_special_tokens=False)["input_ids"], chat=False)

    async def answer(body: dict, prompt_ids: list[int], chat: bool):
        job = make_job(body, prompt_ids, context)
        kind = "chat.completion" if chat else "text_completion"
        created, rid = int(time.time()), ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        try:
            choices = await asyncio.wrap_future(batcher.submit(job))
        except Exception as err:
            raise RequestError(500, f"sampling failed: {type(err).__name__}: {err}") from None
        completion_tokens = sum(len(c.token_ids) for c in choices)
        usage = {"prompt_tokens": len(prompt_ids), "completion_tokens": completion_tokens}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            options = body.get("stream_options") or {}
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            return StreamingResponse(stream(choices, rid, kind, created, chat, usage if with_usage else None),
                                     media_type="text/event-stream")
        return {"id": rid, "object": kind, "created": created, "model": name, "usage": usage,
                "choices": [{"index": i, "finish_reason": c.finish_reason,
                             **({"message": {"role": "assistant", "content": c.text}} if chat
                                else {"text": c.text, "logprobs": None})}
                            for i, c in enumerate(choices)]}

    def stream(choices, rid: str, kind: str, created: int, chat: bool, usage: dict | None):
        """Server-sent events: per choice a chunk per token's worth of text and one with its finish_reason;
        then, when stream_options.include_usage asked for it, a usage chunk; then [DONE]."""
        def event(index: int, text: str | None, finish: str | None, role: bool = False) -> str:
            if chat:
                delta = {} if text is None else {"content": text}
                if role:
                    delta = {"role": "assistant", "content": ""}
                choice = {"index": index, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
            return chunk([choice])

        def chunk(choice_list: list, **extra) -> str:
            payload = {"id": rid, "object": kind + ".chunk" if chat else kind, "created": created,
                       "model": name, "choices": choice_list, **extra}
            return f"data: {json.dumps(payload)}\n\n"

        for index, choice in enumerate(choices):
            if chat:
                yield event(index, None, None, role=True)
            for piece in text_pieces(tokenizer, choice):
                yield event(index, piece, None)
            yield event(index, None, choice.finish_reason)
        if usage is not None:
            yield chunk([], usage=usage)
        yield "data: [DONE]\n\n"

    return app


def text_pieces(tokenizer, choice) -> list[str]:
    """The choice's text split where its tokens end (a multi-byte character waits for its last token)."""
    pieces, shown = [], ""
    for k in range(1, len(choice.token_ids) + 1):
        text = tokenizer.decode(choice.token_ids[:k], skip_special_tokens=True)
        text = text[: len(choice.text)]
        if text.startswith(shown) and len(text) > len(shown) and not text.endswith("\ufffd"):
            pieces.append(text[len(shown):])
            shown = text
    if shown != choice.text:
        pieces.append(choice.text[len(shown):])
    return pieces


async def read_body(request: Request, name: str) -> dict:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    if not isinstance(body.get("model"), str):
        raise RequestError(400, f"model is required: this server serves {name!r}", "model")
    if body["model"] != name:
        raise RequestError(404, f"the model {body['model']!r} does not exist: this server serves {name!r}",
                           "model")
    return body


def make_job(body: dict, prompt_ids: list[int], context: int | None) -> Job:
    """A batcher Job from the request's sampling fields, each checked."""
    def number(key, default, low, high, kind=float):
        value = body.get(key, default)
        if value is None:
            value = default
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or (kind is int and value != int(value)) or not low <= value <= high:
            raise RequestError(400, f"{key}={value!r} must be a{'n integer' if kind is int else ' number'} "
                                    f"in [{low}, {high}]", key)
        return kind(value)

    max_tokens = number("max_tokens", DEFAULT_MAX_TOKENS, 1, 1_000_000, int)
    if context is not None and len(prompt_ids) + max_tokens > context:
        raise RequestError(400, f"the prompt's {len(prompt_ids)} tokens + max_tokens={max_tokens} exceed the "
                                f"model's context of {context}: lower max_tokens or shorten the prompt",
                           "max_tokens")
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    well_formed = isinstance(stop, (list, tuple)) and all(isinstance(s, str) and s for s in stop)
    if not well_formed or len(stop) > 4:
        raise RequestError(400, "stop must be a non-empty string or a list of up to 4 of them", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(400, f"seed={seed!r} must be an integer", "seed")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise RequestError(400, "stream must be true or false", "stream")
    return Job(prompt_ids=prompt_ids, max_tokens=max_tokens,
               temperature=number("temperature", 1.0, 0.0, 2.0), top_p=number("top_p", 1.0, 1e-9, 1.0),
               n=number("n", 1, 1, MAX_N, int), stop=tuple(stop), seed=seed)


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 16,
          model_name: str | None = None) -> None:
    import uvicorn

    app = build_app(model_dir, max_batch, model_name)
    name = model_name or Path(model_dir).name
    print(f"serving {model_dir} as {name!r} on http://{host}:{port}/v1 (max batch {max_batch})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
