"""facegen.faces."""
