"""The tracer: line steps, per-frame occurrence counts, values and types (docs/TRACE.md)."""
