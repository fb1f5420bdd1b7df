"""Models: loading a policy, a frozen reference or a tiny model built from scratch, and saving them back.

`load.py` loads and saves Hugging Face model folders (dtype, LoRA, activation checkpointing, atomic saves);
`tiny.py` builds a small Llama-style model and a byte-level BPE tokenizer offline, for tests and the demo.
This file imports nothing, so `import alignkit.models` stays cheap; transformers loads with the submodules.
"""
