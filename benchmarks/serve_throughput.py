"""Throughput of a running `alignkit serve`: the same chat requests sent one at a time, then all at once from
`--clients` threads; completion tokens per second of each, and the batch sizes the server used.

  alignkit serve MODEL_DIR --port 8000 --max-batch 16 &
  python benchmarks/serve_throughput.py --url http://127.0.0.1:8000 --model NAME --requests 32 --clients 16
"""

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx


def run(url: str, bodies: list[dict], clients: int) -> dict:
    before = httpx.get(f"{url}/stats").json()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        replies = list(pool.map(lambda b: httpx.post(f"{url}/v1/chat/completions", json=b, timeout=600).json(),
                                bodies))
    seconds = time.perf_counter() - started
    after = httpx.get(f"{url}/stats").json()
    tokens = sum(r["usage"]["completion_tokens"] for r in replies)
    calls = after["sampler_calls"] - before["sampler_calls"]
    return {"clients": clients, "requests": len(bodies), "seconds": round(seconds, 2),
            "completion_tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
            "requests_per_s": round(len(bodies) / seconds, 2), "sampler_calls": calls,
            "mean_batch": round(len(bodies) / calls, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    bodies = [{"model": args.model, "messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
               "max_tokens": args.max_tokens, "temperature": 1.0} for i in range(args.requests)]
    run(args.url, bodies[:2], 1)  # warm up
    results = [run(args.url, bodies, 1), run(args.url, bodies, args.clients)]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
