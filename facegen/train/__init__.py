"""facegen.train."""
