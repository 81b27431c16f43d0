"""Record what the installed Nix prints, verbatim, for the parsers' tests.

Run it with the Nix to record on PATH (in a matrix root: `python -m tests.matrix shell sid --
python3 tests/data/nix-dialects/record.py`). It builds two tiny derivations (one referencing
the other) in an isolated store under a fixed directory (so the recorded paths are the same on
every machine), signs them, copies them to a file:// binary cache, and saves under
tests/data/nix-dialects/<version>/:

- version.txt: `nix --version`;
- path-info-<form>-<query>.json: `nix path-info --json` stdout, for form `plain` and, where
  the Nix accepts the flag, `format1` / `format2` (`--json-format N`); for the queries `local`
  (both paths), `missing` (a valid and an invalid path), `cache` and `cache-missing` (the
  same against `--store file://...`);
- config-<command>.json: `nix config show --json` / `nix show-config --json` stdout (one file
  when both print the same);
- post-build-hook.json: the paths built, their `nix-store --query --hash`, and the OUT_PATHS
  and DRV_PATH Nix gave a post-build-hook;
- runs.json: every command's argv, exit code and stderr (warnings are part of the dialect).

Standard library only: it runs in roots before the project is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path("/tmp/npq-nix-dialects")
HERE = Path(__file__).resolve().parent
NIX = ["nix", "--extra-experimental-features", "nix-command"]
CONF = """\
build-users-group =
sandbox = false
substituters =
experimental-features = nix-command
narinfo-cache-negative-ttl = 0
"""
DEP = ('builtins.derivation { name = "dialect-dep"; system = builtins.currentSystem; '
       'builder = "/bin/sh"; args = [ "-c" "echo dep > $out" ]; }')
TOP = ('builtins.derivation { name = "dialect-top"; system = builtins.currentSystem; '
       'builder = "/bin/sh"; dep = ' + DEP + '; args = [ "-c" "echo $dep > $out" ]; }')
MISSING = "00000000000000000000000000000000-dialect-missing"


def env(root: Path = ROOT) -> dict[str, str]:
    """The environment of an isolated Nix under `root` (record_ca.py uses it too)."""
    e = {k: v for k, v in os.environ.items() if k not in ("NIX_REMOTE", "NIX_PATH")}
    e.update(NIX_CONF_DIR=str(root / "etc"), NIX_STORE_DIR=str(root / "store"),
             NIX_STATE_DIR=str(root / "var"), NIX_LOG_DIR=str(root / "log"),
             HOME=str(root / "home"), XDG_CACHE_HOME=str(root / "cache"))
    return e


class Recorder:
    def __init__(self) -> None:
        self.runs: list[dict[str, object]] = []

    def run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=600,
                              check=False)
        self.runs.append({"argv": argv, "returncode": proc.returncode, "stderr": proc.stderr})
        if check and proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
        return proc


def prepare() -> None:
    if ROOT.exists():
        for dirpath, dirnames, _ in os.walk(ROOT):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o700)
        shutil.rmtree(ROOT)
    for sub in ("store", "var", "log", "etc", "home", "cache", "keys"):
        (ROOT / sub).mkdir(parents=True)
    hook = ROOT / "hook.sh"
    hook.write_text("#!/bin/sh\nprintf '{\"OUT_PATHS\": \"%s\", \"DRV_PATH\": \"%s\"}\\n' "
                    f"\"$OUT_PATHS\" \"$DRV_PATH\" >> {ROOT / 'hook.jsonl'}\n")
    hook.chmod(0o755)
    (ROOT / "etc" / "nix.conf").write_text(CONF + f"post-build-hook = {hook}\n")


def main() -> int:
    prepare()
    rec = Recorder()
    version = rec.run([*NIX, "--version"]).stdout
    number = version.split()[-1]
    out = HERE / number
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    (out / "version.txt").write_text(version)

    top = rec.run(["nix-build", "--no-out-link", "-E", TOP]).stdout.split()[-1]
    dep = rec.run(["nix-store", "--query", "--references", top]).stdout.split()[0]
    hashes = {p: rec.run(["nix-store", "--query", "--hash", p]).stdout.strip()
              for p in (top, dep)}
    secret, public = ROOT / "keys" / "dialect-1.sec", ROOT / "keys" / "dialect-1.pub"
    rec.run(["nix-store", "--generate-binary-cache-key", "dialect-1", str(secret), str(public)])
    rec.run([*NIX, "store", "sign", "--key-file", str(secret), top])
    cache = f"file://{ROOT / 'cache-store'}"
    rec.run([*NIX, "copy", "--to", f"{cache}?secret-key={secret}", top])
    missing = f"{ROOT / 'store'}/{MISSING}"

    queries = {"local": ([], [top, dep]), "missing": ([], [missing, top]),
               "cache": (["--store", cache], [top, dep]),
               "cache-missing": (["--store", cache], [missing])}
    for form, flags in (("plain", []), ("format1", ["--json-format", "1"]),
                        ("format2", ["--json-format", "2"])):
        for query, (store, paths) in queries.items():
            proc = rec.run([*NIX, "path-info", "--json", *flags, *store, *paths], check=False)
            if proc.returncode == 0:
                (out / f"path-info-{form}-{query}.json").write_text(proc.stdout)
    shown: list[str] = []
    for name, cmd in (("config-show", ["config", "show"]), ("show-config", ["show-config"])):
        proc = rec.run([*NIX, *cmd, "--json"], check=False)
        # Where both exist, show-config is an alias printing the same bytes: keep one file.
        if proc.returncode == 0 and proc.stdout not in shown:
            (out / f"config-{name}.json").write_text(proc.stdout)
        shown.append(proc.stdout)

    hook_runs = [json.loads(line) for line in (ROOT / "hook.jsonl").read_text().splitlines()]
    meta = {"built": {"top": top, "dep": dep}, "nar_hashes": hashes, "runs": hook_runs}
    (out / "post-build-hook.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "runs.json").write_text(json.dumps(rec.runs, indent=2) + "\n")
    print(f"recorded {version.strip()} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
