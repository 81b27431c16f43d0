"""The package's Nix build runs its check phase here the way Nix runs it.

`nix flake check` builds `packages.<system>.default` (nix/package.nix) before any VM test, and
buildPythonApplication runs `checkPhase` as the install check: pytest on the source that
`src`'s filter keeps (not the checkout), against the installed package on PYTHONPATH, with
python3's own interpreter (no console script beside it), as an unprivileged build user, with
no network, no nix on PATH and HOME=/homeless-shelter. Unit tests that pass in the
virtualenv can fail there (an import of bench/, a script looked up beside sys.executable, a
test that needs root or the network), which breaks every NixOS system using the module.

Everything comes from nix/package.nix itself, evaluated by real Nix: the filter (applied as
builtins.path applies it, to the files git tracks, as a flake's source has them), the
check phase's text and the Python inputs it declares. Only the interpreter and the inputs'
files come from here: the test venv's own distributions, each listed input and what it
requires, nothing else.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from nix_push_queue.nix.isolated import IsolatedNix

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# The real nixpkgs lib, when the shared evaluation kit sits beside the checkout (CI has it);
# otherwise the few functions package.nix calls, in builtins.
SHARED_LIB = REPO.parent / "shared" / "nixos-eval" / "nixpkgs-subset" / "lib"
NOBODY = 65534
# What a build sandbox offers besides the inputs: coreutils and friends, never nix.
TOOLS = ("sh", "bash", "env", "cat", "cp", "mv", "rm", "mkdir", "ls", "ln", "chmod", "sed", "grep",
         "awk", "tar", "gzip", "find", "sort", "head", "tail", "tr", "wc", "date", "sleep", "true",
         "false", "uname", "id", "touch", "dirname", "basename", "readlink", "realpath", "mktemp",
         "printf", "echo", "test", "expr", "od", "cut", "tee", "diff", "cmp", "stat")

PACKAGE = """
{ repo, sharedLib }:
let
  stubLib = {
    removePrefix = p: s:
      let n = builtins.stringLength p; in
      if builtins.substring 0 n s == p then builtins.substring n (-1) s else s;
    splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
    cleanSourceWith = { src, filter, name ? "source" }: { inherit src filter; };
    licenses.mit = "mit";
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
  };
  lib = if builtins.pathExists sharedLib then import sharedLib else stubLib;
  # Every python3Packages attribute package.nix names, as its own name.
  names = [ "setuptools" "jsonschema" "jinja2" "pyyaml" "prometheus-client" "boto3"
            "pytest" "pytest-timeout" "hypothesis" ];
  python3Packages = builtins.listToAttrs (map (n: { name = n; value = n; }) names)
    // { buildPythonApplication = args: args; };
  args = import (repo + "/nix/package.nix") { inherit lib python3Packages; };
  # builtins.path's walk: a rejected directory drops everything below it.
  walk = dir: rel: builtins.concatLists (map
    (name:
      let type = (builtins.readDir dir).${name}; path = "${dir}/${name}"; in
      if !(args.src.filter path type) then [ ]
      else if type == "directory" then walk path "${rel}${name}/"
      else [ "${rel}${name}" ])
    (builtins.attrNames (builtins.readDir dir)));
in
{
  inherit (args) checkPhase;
  inputs = args.dependencies ++ args.nativeCheckInputs;
  files = walk repo "";
}
"""


@dataclass(frozen=True)
class Package:
    check_phase: str
    inputs: tuple[str, ...]
    files: tuple[str, ...]


def evaluate(nix: IsolatedNix) -> Package:
    proc = nix.run(["nix-instantiate", "--eval", "--strict", "--json", "--readonly-mode",
                    "--argstr", "repo", str(REPO), "--argstr", "sharedLib", str(SHARED_LIB),
                    "--expr", PACKAGE], timeout=120)
    got = json.loads(proc.stdout)
    files = got["files"]
    # A flake's source: the files git tracks, nothing else (without git: every file).
    if (REPO / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], check=True,
                                capture_output=True, text=True).stdout
        tracked = set(listed.split("\0"))
        files = [f for f in files if f in tracked]
    return Package(got["checkPhase"], tuple(got["inputs"]), tuple(sorted(files)))


def reachable_by_nobody(path: Path) -> bool:
    real = path.resolve()
    if not real.stat().st_mode & 0o001:
        return False
    return all(p.stat().st_mode & 0o001 for p in real.parents)


def interpreter() -> Path:
    """An interpreter of this test run's Python version that the build user may run."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(sys.base_prefix) / "bin" / name, Path("/usr/bin") / name,
                  Path("/usr/local/bin") / name]
    for candidate in candidates:
        if candidate.exists() and (os.geteuid() != 0 or reachable_by_nobody(candidate)):
            return candidate
    pytest.skip(f"no {name} that an unprivileged user can run (tried {candidates})")


def closure(names: tuple[str, ...]) -> list[Distribution]:
    """The distributions named, and what they require (extras left out), from this venv."""
    found: dict[str, Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            found[name] = distribution(name)
        except PackageNotFoundError:
            pytest.fail(f"nix/package.nix (or a dependency) needs {name}, which this "
                        f"virtualenv lacks: add it to pyproject.toml's dependencies or test extra")
        for text in found[name].requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(found.values())


def link_inputs(names: tuple[str, ...], into: Path) -> None:
    into.mkdir()
    for dist in closure(names):
        site = Path(str(dist.locate_file("")))
        tops = {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}
        for top in sorted(t for t in tops if not t.endswith(".pth")):
            if (site / top).exists() and not (into / top).exists():
                (into / top).symlink_to(site / top)


def copy_source(files: tuple[str, ...], into: Path) -> None:
    for rel in files:
        src, dst = REPO / rel, into / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)


def install(source: Path, out: Path) -> None:
    """What the wheel holds: setuptools' build_py (packages and package data, as
    pyproject.toml declares them) and the metadata (entry points), offline."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed here (venvs of Python >= 3.12 have none), "
                    "and building the package offline needs it")
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build_py", "--build-lib", str(out), "egg_info", "--egg-base", str(out)],
                   cwd=source, check=True, capture_output=True, timeout=300)


@dataclass(frozen=True)
class Build:
    root: Path
    package: Package

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        """`script` in bash, as the build user runs a phase."""
        confine = ["unshare", "--user", "--net", "--"]  # unprivileged: uid is the overflow uid
        if os.geteuid() == 0:
            confine = ["unshare", "--net", "--", "setpriv", f"--reuid={NOBODY}",
                       f"--regid={NOBODY}", "--clear-groups"]
        env = {"PATH": f"{self.root}/python/bin:{self.root}/bin",
               "PYTHONPATH": f"{self.root}/out:{self.root}/inputs",
               "TMPDIR": str(self.root / "tmp"), "HOME": "/homeless-shelter",
               "LANG": "C.UTF-8"}
        return subprocess.run([*confine, "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                               "bash", "-c", f"runHook() {{ :; }}\nset -e\n{script}"],
                              cwd=self.root / "source", capture_output=True, text=True,
                              timeout=900, check=False)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    nix = IsolatedNix.create(tmp_path_factory.mktemp("nix"))
    package = evaluate(nix)
    # Short and world-readable: the build user must reach it, and AF_UNIX socket paths under
    # TMPDIR must stay within 108 bytes, as under the sandbox's /build.
    root = Path(tempfile.mkdtemp(prefix="npq-pkg-", dir="/tmp"))
    root.chmod(0o755)
    try:
        copy_source(package.files, root / "source")
        install(root / "source", root / "out")
        link_inputs(package.inputs, root / "inputs")
        # A venv only for a bare interpreter: the base one's own site-packages (Debian's
        # dist-packages) stay out, and sys.executable's directory holds no console script.
        subprocess.run([str(interpreter()), "-m", "venv", "--without-pip",
                        str(root / "python")], check=True, timeout=120)
        (root / "bin").mkdir()
        for tool in TOOLS:
            if found := shutil.which(tool, path="/usr/bin:/bin"):
                (root / "bin" / tool).symlink_to(found)
        (root / "tmp").mkdir()
        if os.geteuid() == 0:  # the build user owns its build directory
            for path in (root / "source", root / "tmp"):
                subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(path)], check=True)
        yield Build(root, package)
    finally:
        shutil.rmtree(root, ignore_errors=True)


PROBE = """python - <<'EOF'
import json, os, shutil, socket, sys
from pathlib import Path
import nix_push_queue
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    network = True
except OSError:
    network = False
print(json.dumps({"uid": os.geteuid(), "network": network, "nix": shutil.which("nix"),
                  "beside": sorted(p.name for p in Path(sys.executable).parent.iterdir()),
                  "package": nix_push_queue.__file__, "home": os.environ["HOME"]}))
EOF"""


def test_the_phase_runs_where_the_build_runs_it(build: Build) -> None:
    """The conditions below are the point of the other test: check that they hold."""
    proc = build.run(PROBE)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["uid"] != 0
    assert not seen["network"]
    assert seen["nix"] is None
    assert "nix-push-queue" not in seen["beside"]
    assert seen["package"] == f"{build.root}/out/nix_push_queue/__init__.py"
    assert seen["home"] == "/homeless-shelter"
    # The source is what the filter keeps: the package and its unit tests, no bench or VM tests.
    tops = {f.split("/")[0] for f in build.package.files}
    assert {"pyproject.toml", "src", "schema", "tests"} <= tops
    assert not tops & {"bench", "vm-tests", "docs", "flake.nix", ".venv"}
    assert "tests/unit/test_hook.py" in build.package.files


def test_check_phase_passes(build: Build) -> None:
    proc = build.run(build.package.check_phase)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, (
        f"nix/package.nix's checkPhase fails in the build:\n{tail}\n(the source is the files "
        "git tracks that the filter keeps: `git add` a new file the tests need)")
    assert " passed" in proc.stdout.splitlines()[-1], tail
