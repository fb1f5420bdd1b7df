"""The preference-annotation web app behind `alignkit annotate`: people compare responses, the app collects
their labels, measures agreement and exports rows that `alignkit reward` and `alignkit dpo` read.

Importing this package imports nothing heavy; FastAPI, SQLAlchemy and friends come in with the modules that
use them (`app`, `db`, ...), which need the `annotate` extra.
"""
