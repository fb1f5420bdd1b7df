"""Evaluation: a policy against a baseline, judged pairwise, with win-rate intervals and diagnostics.

winrate.py and diagnostics.py are pure (numpy and the standard library); run.py, judges.py and sampling.py
load models and import transformers only inside their functions. Importing this package stays cheap.
"""
