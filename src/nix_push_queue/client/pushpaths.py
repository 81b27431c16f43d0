"""What `push` queues: the store paths a user names, checked before anything is sent.

An argument may be a store path, a file inside one, or a link to one (`./result`). Below the
store dir the path is read by text (a file inside a store path may link into another one, and
the user means the one they named), so `..` is refused there rather than cut off: `STORE/
<hash>-x/../../../etc` is not `<hash>-x`. Elsewhere the kernel resolves it.

Then every path must be valid in the local store (`nix-store --check-validity`): a path that
is well formed but was never built, or was collected, is refused here with its name instead of
being queued and dropped at upload time. The hook needs no such check (its paths come from Nix)
and the daemon's socket takes well-formed paths; the uploader drops those gone by then.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..errors import NixError, ProtocolError
from ..nix import storepath
from .control import Endpoint

# Paths per nix-store call: far below ARG_MAX even with 211-character names.
CHUNK = 2000


def store_paths(args: Sequence[str], ep: Endpoint, *, closure: bool) -> list[str]:
    """The store paths `args` name (with `closure`, and everything they reference), each
    well formed and valid in the store. Raises ProtocolError("bad_path") naming the first
    that is not, NixError when Nix cannot be asked."""
    # Imported here: nix.runner pulls in asyncio.
    from ..nix.runner import nix_program

    nix_store = nix_program("nix-store", ep.nix_bin_dir)
    tops = [top_store_path(arg, ep.store_dir) for arg in args]
    for path in tops:
        problem = storepath.problem(path, ep.store_dir)
        if problem is not None:
            raise ProtocolError(f"{path}: {problem}", "bad_path")
    unique = list(dict.fromkeys(tops))
    if closure:  # nix-store refuses an invalid path itself
        found = _run(nix_store, "--query", "--requisites", *unique).splitlines()
        return list(dict.fromkeys(p for p in found if p))
    invalid = [line for i in range(0, len(unique), CHUNK)
               for line in _run(nix_store, "--check-validity", "--print-invalid",
                                *unique[i:i + CHUNK]).splitlines() if line]
    if invalid:
        more = f" (and {len(invalid) - 1} more)" if len(invalid) > 1 else ""
        raise ProtocolError(f"{invalid[0]}{more}: not a valid path in the store; build or "
                            "substitute it first (`nix-store --check-validity`)", "bad_path")
    return unique


def named_paths(args: Sequence[str], store_dir: str, *,
                derivations: bool = False) -> list[str]:
    """The store paths named (`wait --paths`, `retry`, `drop`), well formed, links such as
    `./result` followed; unlike `push`, not necessarily still in the store (a path lost to
    garbage collection is what a wait reports and a drop acknowledges). With `derivations`,
    derivation installables too (`drop DRV^*` of one whose outputs were not resolved)."""
    from ..nix import installable

    if derivations and (drvs := [a for a in args if installable.split(a) is not None]):
        for arg in drvs:
            problem = installable.problem(arg, store_dir)
            if problem is not None:
                raise ProtocolError(f"{arg}: {problem}", "bad_path")
        rest = named_paths([a for a in args if a not in drvs], store_dir)
        return list(dict.fromkeys([*rest, *map(installable.normalize, drvs)]))
    paths = [top_store_path(arg, store_dir) for arg in args]
    for path in paths:
        problem = storepath.problem(path, store_dir)
        if problem is not None:
            raise ProtocolError(f"{path}: {problem}", "bad_path")
    return list(dict.fromkeys(paths))


def top_store_path(arg: str, store_dir: str) -> str:
    """The store path `arg` names or lies in; `arg` itself when it is not under the store
    (the caller's check then says so)."""
    prefix = storepath.normalize(store_dir).rstrip("/") + "/"
    plain = storepath.normalize(arg)
    if not plain.startswith(prefix):
        plain = str(Path(arg).resolve())
    if not plain.startswith(prefix):
        return plain
    if ".." in plain.split("/"):
        raise ProtocolError(f"{arg}: has a '..' component below the store; give the store "
                            "path itself", "bad_path")
    return prefix + plain[len(prefix):].split("/", 1)[0]


def _run(*argv: str) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NixError(list(argv), 127, str(exc)) from exc
    if proc.returncode != 0:
        raise NixError(list(argv), proc.returncode, proc.stderr)
    return proc.stdout
