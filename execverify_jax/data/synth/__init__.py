"""Program synthesis: constraint grid, offline z3-based synthesizer, independent checker, LLM path.

    from execverify_jax.data.synth import grid, builder, checker
    cells = grid.build_grid(levels=(1, 2, 3, 4, 5, 6))
    cand = builder.synthesize(cell, seed, n_inputs, builder.SynthConfig())
    assert checker.check(cand["code"], cand["entry"], cand["constraint"]) == []

See docs/SYNTHESIS.md. Data side: never imports jax/flax/optax/orbax.
"""
