"""facegen.align."""
