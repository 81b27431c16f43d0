"""Derivation installables in the queue: `/nix/store/…-x.drv^*` ("the outputs of this
derivation, with their realisations") or `…-x.drv^out,dev` (those outputs).

A spool line or an enqueued entry is either a store path or one of these. The queue spells
them the modern way (`^`, Nix >= 2.13); `!` (Nix 2.8's `nix-store -r DRV!out`) is accepted on
input and rewritten. How the installed Nix wants them on its command line is
`dialect.Dialect.installable`'s business. Pure functions, stdlib only: the hook imports this.
"""

from __future__ import annotations

from . import storepath

ALL = "*"
_SEPARATORS = ("^", "!")


def split(entry: str) -> tuple[str, str] | None:
    """(derivation path, output spec) when `entry` is written as an installable (it has a
    `^` or `!` after `.drv`), else None. Says nothing about validity: see `problem`."""
    for sep in _SEPARATORS:
        drv, found, spec = entry.rpartition(sep)
        if found and drv.endswith(".drv"):
            return drv, spec
    return None


def output_names(spec: str) -> tuple[str, ...] | None:
    """The output names of a spec; None for `*` (all of them)."""
    return None if spec == ALL else tuple(spec.split(","))


def spec_problem(spec: str) -> str | None:
    if spec == ALL:
        return None
    names = spec.split(",")
    for name in names:
        # Output names follow store path name rules (they become part of one).
        if not name or not storepath.NAME_CHARS.issuperset(name) or name.startswith("."):
            return f"output name {name!r} is not valid (expected '*' or out,dev,...)"
    if len(set(names)) != len(names):
        return "an output is named twice"
    return None


def problem(entry: str, store_dir: str) -> str | None:
    """Why `entry` is neither a store path nor a derivation installable, or None."""
    parts = split(entry)
    if parts is None:
        return storepath.problem(entry, store_dir)
    drv, spec = parts
    why = storepath.problem(drv, store_dir)
    if why is not None:
        return f"derivation {why}"
    return spec_problem(spec)


def canonical(drv: str, spec: str = ALL) -> str:
    """The queue's spelling: `DRV^*` or `DRV^a,b` (outputs sorted, so equal sets dedupe)."""
    names = output_names(spec)
    return f"{drv}^{ALL if names is None else ','.join(sorted(names))}"


def normalize(entry: str) -> str:
    """`entry` with an installable in the queue's spelling; a store path unchanged."""
    parts = split(entry)
    return entry if parts is None else canonical(*parts)
