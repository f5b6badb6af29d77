"""execverify_jax.eval: the evaluation harness (`execverify eval`, docs/EVAL.md).

Benchmarks (one module each) turn a data file into `EvalItem`s (prompt messages plus the
ground truth needed to grade them) and grade responses with the hardened rewards of
`execverify_jax.rewards` (literal answers, ground-truth code run in the sandbox pool, never the
model's code). `runner.py` joins a benchmark with responses (a file, or the model through
`generation.py`, imported only when a model is given) and writes results.json / samples.jsonl.
"""
