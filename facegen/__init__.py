"""facegen: PTT Beauty posts -> aligned face dataset -> DDPM -> FID, as a DVC pipeline."""

__version__ = "0.1.0"
