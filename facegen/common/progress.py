"""Progress bars that stay out of logs: a tqdm bar redraws itself with ``\\r``, which a log file or
a CI page keeps as one long garbled line."""

from __future__ import annotations


def bar_disable(progress: bool = True) -> bool | None:
    """tqdm's ``disable`` for a bar wanted only on a terminal: ``None`` when ``progress`` (tqdm then
    turns the bar off when its stream is not a TTY: no ``\\r`` in ``dvc repro`` logs), else True."""
    return None if progress else True
