"""facegen.sample."""
