"""Where an LLM judge's answers come from: a local causal-LM folder, or any OpenAI-compatible chat-completions
endpoint; and the on-disk cache in front of either, so a rerun asks nothing it asked before.

A backend is an object with `name`, `model` and `chat(conversations, sampling) -> list[str | None]`: one
answer text per conversation (a list of {"role", "content"} messages), None where the request failed for good.
The endpoint client is the standard library only (urllib, threads); the local backend imports torch and
transformers inside its methods, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from alignkit.errors import AlignkitError


@dataclass
class Sampling:
    """How the judge samples. temperature 0 is greedy and sends no seed (it needs none, and `alignkit serve`
    samples a seeded request alone, outside any batch); seed varies between parse retries."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict:
        fields = {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}
        return fields if self.temperature == 0 else {**fields, "seed": self.seed}


@dataclass
class RequestStats:
    """What a backend did, for the judge's report and the tests: every HTTP request sent (first tries and
    retries), the retries alone, the conversations that failed for good, and the sleeps between tries."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    backoff_sleeps: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the last error of each failed conversation
    retry_causes: list[str] = field(default_factory=list)  # the error before each retry
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "retries": self.retries, "failures": self.failures,
                "errors": self.errors[:20], "retry_causes": self.retry_causes[:20]}


class RetryableError(Exception):
    """A timeout, a connection error, 429 or a 5xx: worth asking again after a pause."""


class EndpointBackend:
    """Any OpenAI-compatible `/v1/chat/completions` endpoint (OpenAI, vLLM, `alignkit serve`, ...).

    The API key is read from the environment variable named by `api_key_env` at each request and never
    stored. A request that times out, cannot connect, or gets 429 / 5xx is retried up to `max_retries` times
    after sleeping backoff_s * 2**k (k = 0, 1, ...: exponential backoff); any other 4xx is the caller's
    mistake and fails at once. At most `concurrency` requests are in flight at a time.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, timeout_s: float = 60.0,
                 max_retries: int = 4, backoff_s: float = 1.0, concurrency: int = 4):
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise AlignkitError(f"judge endpoint: concurrency={concurrency} must be >= 1, max_retries="
                                f"{max_retries} >= 0, timeout_s={timeout_s} > 0, backoff_s={backoff_s} >= 0")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.name, self.model = f"endpoint {base_url}", model
        self.api_key_env = api_key_env
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.concurrency = concurrency
        self.stats = RequestStats()
        if api_key_env and not os.environ.get(api_key_env):
            raise AlignkitError(f"judge endpoint: environment variable {api_key_env} (the API key) is not "
                                f"set: export {api_key_env}=... or leave api_key_env out for a server "
                                "without keys")

    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[str | None]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda messages: self._ask(messages, sampling), conversations))

    def _ask(self, messages: list[dict], sampling: Sampling) -> str | None:
        body = json.dumps({"model": self.model, "messages": messages, **sampling.as_dict()}).encode()
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                pause = self.backoff_s * 2 ** (attempt - 1)
                with self.stats.lock:
                    self.stats.retries += 1
                    self.stats.retry_causes.append(last_error)
                    self.stats.backoff_sleeps.append(pause)
                time.sleep(pause)
            try:
                return self._post(body)
            except RetryableError as err:
                last_error = str(err)
            except AlignkitError as err:  # a 4xx other than 429, or a malformed answer: asking again is futile
                last_error = str(err)
                break
        with self.stats.lock:
            self.stats.failures += 1
            self.stats.errors.append(last_error)
        return None

    def _post(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(self.api_key_env, '')}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with self.stats.lock:
            self.stats.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode(errors="replace")
            if err.code == 429 or err.code >= 500:
                raise RetryableError(f"HTTP {err.code} from {self.url}: {detail}") from None
            raise AlignkitError(f"HTTP {err.code} from {self.url}: {detail}") from None
        except (TimeoutError, socket.timeout) as err:
            raise RetryableError(f"no answer from {self.url} within {self.timeout_s} s") from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, (TimeoutError, socket.timeout)):
                raise RetryableError(f"no answer from {self.url} within {self.timeout_s} s") from None
            raise RetryableError(f"cannot reach {self.url}: {err.reason}") from None
        except (ConnectionError, json.JSONDecodeError) as err:
            raise RetryableError(f"broken answer from {self.url}: {err}") from None
        try:
            return payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise AlignkitError(f"{self.url} answered without choices[0].message.content: "
                                f"{json.dumps(payload)[:200]}") from None


class LocalBackend:
    """A causal-LM folder sampled in batches with alignkit's KV-cache sampler; each conversation goes through
    the model's own chat template."""

    def __init__(self, model_dir: str, batch_size: int = 16):
        from alignkit.eval.sampling import load_frozen

        self.name, self.model = "local", str(model_dir)
        self.net, self.tokenizer = load_frozen(str(model_dir))
        self.batch_size = batch_size
        self.stats = RequestStats()

    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[str | None]:
        from alignkit.generation.sampler import SamplingSettings, generate

        settings = SamplingSettings(max_new_tokens=sampling.max_tokens, temperature=sampling.temperature,
                                    top_p=sampling.top_p, seed=sampling.seed)
        prompt_ids = [chat_prompt_ids(self.tokenizer, messages) for messages in conversations]
        answers = []
        for start in range(0, len(prompt_ids), self.batch_size):
            answers += generate(self.net, self.tokenizer, prompt_ids[start : start + self.batch_size],
                                settings).texts
        self.stats.requests += len(conversations)
        return answers


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a conversation through the tokenizer's chat template, ending with the assistant's turn."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise AlignkitError("the model's tokenizer has no chat template: a judge and `alignkit serve` chat "
                            "with it, so save the tokenizer with a chat_template (an SFT model has one)")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class CachedBackend:
    """Answers kept on disk, one JSON file per question, keyed by sha256 of (backend, model, messages,
    sampling), written atomically (temp file + rename), so a rerun or a crashed run's rerun asks only what
    it has no answer to. A failed request (None) is not cached: the next run asks again."""

    def __init__(self, backend, folder: str | Path):
        self.backend, self.folder = backend, Path(folder)
        self.name, self.model, self.stats = backend.name, backend.model, backend.stats
        self.hits = 0

    def key(self, messages: list[dict], sampling: Sampling) -> str:
        identity = {"backend": self.backend.name, "model": self.backend.model, "messages": messages,
                    "sampling": sampling.as_dict()}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def chat(self, conversations: list[list[dict]], sampling: Sampling) -> list[str | None]:
        from alignkit.data.io import write_json

        keys = [self.key(messages, sampling) for messages in conversations]
        answers = {k: self._read(k) for k in keys}
        missing = [k for k, answer in answers.items() if answer is None]  # dict keys: each question once
        self.hits += len(keys) - sum(answers[k] is None for k in keys)
        if missing:
            asked = self.backend.chat([conversations[keys.index(k)] for k in missing], sampling)
            for k, answer in zip(missing, asked):
                answers[k] = answer
                if answer is not None:
                    write_json(self._path(k), {"answer": answer})
        return [answers[k] for k in keys]

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def _read(self, key: str) -> str | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["answer"]
        except (json.JSONDecodeError, KeyError):  # cannot happen with atomic writes; ask again if it does
            return None
