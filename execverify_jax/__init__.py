"""execverify-jax: ExecVerify (arXiv 2603.11226) on JAX. Version only; no re-exports."""

__version__ = "0.1.0"
