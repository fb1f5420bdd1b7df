"""Rows in, tensors out: read data files, check their row format, tokenize with masks, pad into batches.

io.py reads JSONL, JSON, Parquet, CSV, saved `datasets` folders and hub ids into `Rows`; schema.py names the
row kinds of DESIGN.md section 3 and validates them with file and line numbers; tokenize.py renders chat or
plain format and builds prompt/response masks under a truncation policy that reports every cut; collate.py
pads; doctor.py is the engine of `alignkit validate`.

Importing this package imports nothing heavy: transformers, datasets and torch load only inside the modules
(and functions) that need them.
"""
