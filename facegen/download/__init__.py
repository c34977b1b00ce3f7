"""facegen.download."""
