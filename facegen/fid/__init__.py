"""facegen.fid."""
