"""argparse types shared by the commands."""

from __future__ import annotations

import argparse
import math


def seconds(text: str) -> float:
    """A duration: a finite number >= 0. float() also takes "nan" and "inf", with which a
    deadline never passes (NaN compares false with everything)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a finite number of seconds >= 0") from None
    return value
