"""One worker thread owns the model: it takes the requests waiting in a queue (up to max_batch sequences),
groups them by how they sample, and runs each group through the batched KV-cache sampler at once.

Requests in one group share temperature, top_p and stop strings; each keeps its own max_tokens (the group
samples to the largest and each row is cut back to its own, so finish_reason and token counts are the row's
own). A request with a seed is sampled in a group of its own, so its answer does not depend on who else was
waiting. The sampler returns whole responses, so a streamed answer arrives after its batch is done.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field

GATHER_S = 0.01  # after the first request arrives, wait this long for others to join its batch


@dataclass
class Job:
    """A request's sequences: n samples of one prompt (token ids)."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    future: Future = field(default_factory=Future)

    def group(self) -> tuple:
        alone = id(self) if self.seed is not None else None
        return (self.temperature, self.top_p, self.stop, self.seed, alone)


@dataclass
class Choice:
    text: str
    token_ids: list[int]  # the response's tokens, EOS included when it ended on one
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (max_tokens)


class Batcher:
    def __init__(self, model, tokenizer, max_batch: int = 16):
        self.model, self.tokenizer, self.max_batch = model, tokenizer, max_batch
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.batch_sizes: Counter[int] = Counter()  # sequences per sampler call -> how many calls
        self.tokens_out = 0
        self.thread = threading.Thread(target=self._work, name="alignkit-serve-batcher", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Future:
        self.jobs.put(job)
        return job.future

    def stats(self) -> dict:
        calls = sum(self.batch_sizes.values())
        return {"sampler_calls": calls, "sequences": sum(k * v for k, v in self.batch_sizes.items()),
                "largest_batch": max(self.batch_sizes, default=0), "completion_tokens": self.tokens_out,
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())}}

    def _work(self) -> None:
        while True:
            waiting = [self.jobs.get()]
            deadline = time.monotonic() + GATHER_S
            while sum(job.n for job in waiting) < self.max_batch:
                try:
                    waiting.append(self.jobs.get(timeout=max(deadline - time.monotonic(), 0)))
                except queue.Empty:
                    break
            groups: dict[tuple, list[Job]] = {}
            for job in waiting:
                groups.setdefault(job.group(), []).append(job)
            for jobs in groups.values():
                try:
                    self._sample(jobs)
                except Exception as err:  # the server answers 500 for these jobs and keeps serving
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(err)

    def _sample(self, jobs: list[Job]) -> None:
        from alignkit.generation.sampler import SamplingSettings, generate

        first = jobs[0]
        settings = SamplingSettings(max_new_tokens=max(job.max_tokens for job in jobs),
                                    temperature=first.temperature, top_p=first.top_p, stop_strings=first.stop,
                                    seed=first.seed)
        rows = [job.prompt_ids for job in jobs for _ in range(job.n)]
        self.batch_sizes[len(rows)] += 1
        out = generate(self.model, self.tokenizer, rows, settings)
        row = 0
        for job in jobs:
            choices = []
            for _ in range(job.n):
                ids = out.response_ids[row][out.response_mask[row]].tolist()
                choices.append(self._cut(ids, job.max_tokens, job.stop))
                row += 1
            self.tokens_out += sum(len(choice.token_ids) for choice in choices)
            job.future.set_result(choices)

    def _cut(self, ids: list[int], max_tokens: int, stop: tuple[str, ...]) -> Choice:
        """This row's own answer from a row sampled to the group's longest max_tokens."""
        eos = self.tokenizer.eos_token_id
        ids = ids[:max_tokens]
        if eos in ids:
            ids = ids[: ids.index(eos) + 1]
            return Choice(self.tokenizer.decode(ids[:-1]), ids, "stop")
        text = self.tokenizer.decode(ids)
        cuts = [text.find(s) for s in stop if s in text]
        if cuts:
            return Choice(text[: min(cuts)], ids, "stop")
        return Choice(text, ids, "length")
