"""`push DRV^out` / `push DRV^*` (Nix 2.8's `DRV!out` too): the outputs of a built derivation,
uploaded with their realisations.

Each installable is resolved here first, with the same command the daemon uses
(`nix build --json --max-jobs 0`, dialect.Dialect.outputs_json): a derivation that is not
built, or whose .drv is not in the store, is refused with Nix's words before anything is
queued, as `push` refuses an invalid path. The daemon is then handed the installable itself
(it resolves it again and uploads `DRV^out`, so the realisations travel), and `--wait` waits
for the output paths found here. A bare `.drv` path is the .drv file, as for Nix >= 2.13.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import NixError, ProtocolError
from ..nix import built, dialect, installable
from .control import Endpoint


@dataclass(frozen=True)
class Derivations:
    entries: tuple[str, ...]  # the installables, in the queue's spelling
    outputs: tuple[str, ...]  # their output paths (what `--wait` waits for)


def split_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(arguments naming store paths, arguments naming derivation installables)."""
    plain = [a for a in args if installable.split(a) is None]
    return plain, [a for a in args if installable.split(a) is not None]


def resolve(args: Sequence[str], ep: Endpoint, env: Mapping[str, str] | None = None
            ) -> Derivations:
    """The installables `args` and their outputs. Raises ProtocolError (bad_path) for a
    malformed one, NixError naming the derivation Nix cannot give the outputs of."""
    entries = []
    for arg in args:
        problem = installable.problem(arg, ep.store_dir)
        if problem is not None:
            raise ProtocolError(f"{arg}: {problem}", "bad_path")
        entries.append(installable.normalize(arg))
    entries = list(dict.fromkeys(entries))
    if not entries:
        return Derivations((), ())
    run_env = dict(os.environ if env is None else env)
    nix = dialect.detect(ep.nix_bin_dir, run_env)
    outputs: list[str] = []
    for entry in entries:
        drv, spec = installable.split(entry) or (entry, installable.ALL)
        names = installable.output_names(spec)
        found = _outputs(nix, drv, names, run_env)
        missing = [n for n in names or () if n not in found]
        if missing:
            raise ProtocolError(f"{entry}: {drv} has no output {', '.join(missing)} "
                                f"(it has {', '.join(sorted(found))})", "bad_path")
        outputs += [found[n] for n in (names or sorted(found))]
    return Derivations(tuple(entries), tuple(dict.fromkeys(outputs)))


def _outputs(nix: dialect.Dialect, drv: str, names: tuple[str, ...] | None,
             env: Mapping[str, str]) -> dict[str, str]:
    argv = nix.outputs_json([nix.installable(drv, names)])
    try:
        proc = subprocess.run(argv, env=dict(env), capture_output=True, text=True,
                              check=False, timeout=600, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NixError(argv, 127, str(exc)) from exc
    if proc.returncode != 0:
        raise NixError(argv, proc.returncode,
                       f"{proc.stderr.strip()}\n(the outputs of {drv} are not all in the "
                       "store: build it first; push never builds)")
    return built.parse_built(proc.stdout).get(drv, {})
