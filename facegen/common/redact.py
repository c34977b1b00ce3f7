"""Masking credentials before anything is printed or logged.

A tracking URI such as ``https://user:s3cret@mlflow.example.com`` or
``postgresql://user:s3cret@db/mlflow`` carries its password; every place that shows a URI
to a person (console, logs, error messages) passes it through :func:`mask_uri` first.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@ -- the password is everything up to the last '@' before the host part
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^/?#\s]*)@")


def mask_uri(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` replaced by ``***``.

    Works on a bare URI or on a whole message that contains URIs; everything else is kept
    (user name, host, path), so the output still says which store was meant.
    """
    return _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
