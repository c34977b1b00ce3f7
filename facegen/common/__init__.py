"""facegen.common."""
