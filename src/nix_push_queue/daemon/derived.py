"""A batch's paths as derivation outputs (derivations.py records which): what the uploader
hands `nix copy` so that Nix sends the realisations with the paths, which content-addressed
derivations need to be substituted. Nix 2.8 has no way to name some outputs of a derivation
(`dialect.Dialect.installable`): there it copies them all."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from ..nix import dialect

# store path -> every (derivation, output name) it is: uploaded as `DRV^out`.
Derivations = Mapping[str, Sequence[tuple[str, str]]]


# Nix's words when a derivation's outputs are not all in the store, or the .drv is not.
NOT_BUILT = ("unable to start any build", "local builds are disabled", "is not valid",
             "does not exist", "no such file or directory")


def present(derivations: Derivations) -> Derivations:
    """Those whose .drv file is still in the store (a collected one cannot name outputs).
    Asked of the file system: `nix path-info DRV` on Nix 2.8 answers with the outputs."""
    kept = {p: [(d, o) for d, o in pairs if os.path.exists(d)]
            for p, pairs in derivations.items()}
    return {p: pairs for p, pairs in kept.items() if pairs}


def derived_roots(nix: dialect.Dialect, roots: Sequence[str],
                  derivations: Derivations) -> list[str]:
    """`roots` with each path of a known derivation replaced by `DRV^out,...` in this Nix's
    spelling, once per derivation, in the place of its first output."""
    names: dict[str, set[str]] = {}
    for path in roots:
        for drv, output in derivations.get(path, ()):
            names.setdefault(drv, set()).add(output)
    out: list[str] = []
    for path in roots:
        if not derivations.get(path):
            out.append(path)
        for drv, _ in derivations.get(path, ()):
            if drv in names:
                out.append(nix.installable(drv, sorted(names.pop(drv))))
    return out
