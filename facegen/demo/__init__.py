"""facegen.demo."""
