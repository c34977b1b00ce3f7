"""facegen.diffusion."""
