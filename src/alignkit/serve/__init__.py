"""`alignkit serve`: an OpenAI-compatible HTTP server over a local causal-LM folder. batcher.py gathers
concurrent requests and samples them together; app.py is the FastAPI app. fastapi and uvicorn are imported
only here, never by `import alignkit` or the CLI's `--help`."""
