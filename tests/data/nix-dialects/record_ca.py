"""Record what the installed Nix prints about a floating content-addressed derivation.

Run it like record.py (`python -m tests.matrix shell sid -- python3
tests/data/nix-dialects/record_ca.py`). With `ca-derivations` on, in an isolated store under a
fixed directory, it builds a two-output floating CA derivation with a post-build-hook that
records OUT_PATHS, DRV_PATH and `nix-store --query --outputs "$DRV_PATH"` (exit code and
stderr), then saves under tests/data/nix-dialects/<version>/ca/:

- hook.json: what the hook saw;
- build-json.json: `nix build --json --no-link --max-jobs 0` of the derivation's outputs in
  this Nix's spelling (`DRV^*` from 2.13, a bare `DRV` before), stdout verbatim;
- build-json-unbuilt.txt: the same for a derivation never built: exit code and stderr.

Standard library only: it runs in roots before the project is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import env  # the sibling script (this directory is not a package)

ROOT = Path("/tmp/npq-nix-dialects-ca")
HERE = Path(__file__).resolve().parent
NIX = ["nix", "--extra-experimental-features", "nix-command ca-derivations"]
CA = ('builtins.derivation {{ name = "dialect-ca-{n}"; system = builtins.currentSystem; '
      'builder = "/bin/sh"; __contentAddressed = true; outputHashMode = "recursive"; '
      'outputHashAlgo = "sha256"; outputs = [ "out" "dev" ]; '
      'args = [ "-c" "echo {n} > $out; echo dev > $dev" ]; }}')
HOOK = """#!/bin/sh
q=$(nix-store --query --outputs "$DRV_PATH" 2>"{root}/q.err"); rc=$?
printf '{{"out_paths": "%s", "drv_path": "%s", "query_rc": %s}}\\n' "$OUT_PATHS" "$DRV_PATH" \
  "$rc" > "{root}/hook.json"
"""


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env(ROOT), capture_output=True, text=True, check=False)


def main() -> int:
    shutil.rmtree(ROOT, ignore_errors=True)
    for sub in ("store", "var", "log", "etc", "home", "cache"):
        (ROOT / sub).mkdir(parents=True)
    hook = ROOT / "hook.sh"
    hook.write_text(HOOK.format(root=ROOT))
    hook.chmod(0o755)
    (ROOT / "etc" / "nix.conf").write_text(
        "build-users-group =\nsandbox = false\nsubstituters =\n"
        f"experimental-features = nix-command ca-derivations\npost-build-hook = {hook}\n")
    version = run(["nix", "--version"]).stdout.split()[-1]
    out = HERE / version / "ca"
    out.mkdir(parents=True, exist_ok=True)
    drv = run(["nix-instantiate", "-E", CA.format(n="built")]).stdout.strip()
    unbuilt = run(["nix-instantiate", "-E", CA.format(n="unbuilt")]).stdout.strip()
    built = run(["nix-build", "--no-out-link", drv])
    if built.returncode != 0:
        sys.stderr.write(built.stderr)
        return 1
    seen = json.loads((ROOT / "hook.json").read_text())
    seen["query_stderr"] = (ROOT / "q.err").read_text()
    (out / "hook.json").write_text(json.dumps(seen, indent=2) + "\n")
    caret = tuple(int(x) for x in version.split(".")[:2]) >= (2, 13)
    flags = ["build", "--json", "--no-link", "--max-jobs", "0"]
    (out / "build-json.json").write_text(
        run([*NIX, *flags, f"{drv}^*" if caret else drv]).stdout)
    failed = run([*NIX, *flags, f"{unbuilt}^*" if caret else unbuilt])
    (out / "build-json-unbuilt.txt").write_text(f"exit {failed.returncode}\n{failed.stderr}")
    print(f"recorded {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
