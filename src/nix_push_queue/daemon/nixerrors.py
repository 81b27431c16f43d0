"""What a failed Nix command said, made safe and short, and what to do about it.

`redact` strips key parameters from any store URL Nix echoes; `summarize` keeps the lines of
Nix's stderr that say what went wrong; `classify` decides ok / transient / permanent from the
exit status and stderr (when unsure: transient). Shared by the uploader, the resolver and
`verify`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from ..nix import runner

UploadKind = Literal["ok", "transient", "permanent"]

MESSAGE_LINES = 6
MESSAGE_CHARS = 800

_NIX_PREFIXES = ("error:", "warning:", "copying ", "these ", "this path")
_SECRET_PARAM = re.compile(r"((?:secret-key|ssh-key)=)[^&\s'\"]*")


def redact(text: str) -> str:
    """Strip key parameter values from any URL Nix echoes back."""
    return _SECRET_PARAM.sub(r"\1<redacted>", text)


def summarize(stderr: str) -> str:
    """The lines of Nix's stderr that say what went wrong, redacted and bounded.

    Nix prints progress ("copying path ...") and retry warnings before the final `error:`;
    the error and the lines after it (curl's response body, ssh's reason) are what matter.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    if errors:
        start = errors[-1]
        # Child programs (ssh) print their reason just before Nix's error line.
        while (start > 0 and errors[-1] - start < MESSAGE_LINES // 2
               and not lines[start - 1].startswith(_NIX_PREFIXES)):
            start -= 1
        lines = lines[start:]
    lines = [line for line in lines if not line.startswith(("copying ", "<", "response body"))]
    return redact(" | ".join(lines[:MESSAGE_LINES]))[:MESSAGE_CHARS]


_PERMANENT = (
    "don't know how to open nix store",  # e.g. s3:// on a Nix built without S3
    "unsupported uri scheme",
    "secret key is corrupt",
    "secret key is not valid",
    "unknown compression method",
    "lacks a valid signature",  # the remote does not trust the target's key (Nix 2.8)
    "lacks a signature by a trusted key",  # the same from Nix 2.26 and 2.34
    "is not in the nix store",
    "is not a store path",
    "host key verification failed",
    "permission denied (publickey",
)
_HTTP_STATUS = re.compile(r"http error (\d{3})")
_RETRYABLE_4XX = frozenset({408, 409, 423, 425, 429})


def classify(result: runner.CmdResult, key_paths: Sequence[str] = ()) -> UploadKind:
    """ok / transient / permanent from exit status and stderr. When unsure: transient."""
    if result.ok:
        return "ok"
    if result.timed_out or result.returncode < 0:
        return "transient"
    text = result.stderr.lower()
    if any(marker in text for marker in _PERMANENT):
        return "permanent"
    # A key file that cannot be opened is a configuration error; a cache directory that
    # cannot be written may be fixed by its admin, so that one stays transient.
    for path in key_paths:
        # Nix 2.8 and 2.26 quote the path with ', Nix 2.34 with ".
        if any(f"opening file {q}{path.lower()}{q}" in text for q in "'\""):
            return "permanent"
    status = _HTTP_STATUS.findall(text)
    if status:
        code = int(status[-1])
        if 400 <= code < 500 and code not in _RETRYABLE_4XX:
            return "permanent"
    return "transient"
