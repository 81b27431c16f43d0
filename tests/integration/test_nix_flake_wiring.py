"""flake.nix and nix/package.nix wired up, evaluated by real Nix against a stub nixpkgs.

There is no nixpkgs here, so the flake's outputs are evaluated with a stand-in that has only
the attributes the flake may use (no `pkgs.system`: nixpkgs deprecated it), whose builders
return their arguments. What this catches: a misnamed attribute or argument in the flake,
the output shape `nix flake check` expects (checks/apps/packages per system), the package's
source filter, and that an older nixpkgs setuptools still evaluates. What nixpkgs itself makes
of those arguments is the VM tests' job (docs/nixos.md lists what was checked by reading).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.nix.isolated import IsolatedNix

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = ["aarch64-linux", "x86_64-linux"]
VM_TESTS = sorted(f"vm-{p.stem}" for p in (REPO / "vm-tests").glob("*.nix")
                  if p.stem not in ("default", "lib", "constants", "scripts"))

# Builtins-only stand-ins for the few nixpkgs functions the flake and package call. A
# "derivation" here is the attrset its builder was given, marked with type = "derivation".
STUB = """
let
  drv = name: args: args // { type = "derivation"; inherit name; outPath = "/stub/" + name; };
  lib = rec {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    getExe = d: "${d.outPath}/bin/${d.meta.mainProgram}";
    removePrefix = p: s:
      let n = builtins.stringLength p; in
      if builtins.substring 0 n s == p then builtins.substring n (-1) s else s;
    splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
    versionAtLeast = a: b: builtins.compareVersions a b >= 0;
    throwIfNot = cond: msg: if cond then (x: x) else throw msg;
    cleanSourceWith = { src, filter }: { inherit src filter; };
    licenses.mit = "mit";
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
  };
  python3Packages = {
    setuptools = { version = SETUPTOOLS; };
    buildPythonApplication = args: drv "${args.pname}-${args.version}" args;
    jsonschema = "jsonschema"; jinja2 = "jinja2"; pyyaml = "pyyaml";
    prometheus-client = "prometheus-client"; pytest = "pytest";
    pytest-timeout = "pytest-timeout"; hypothesis = "hypothesis";
    mypy = "mypy"; types-pyyaml = "types-pyyaml";
  };
  pkgsFor = system: rec {
    inherit lib python3Packages;
    callPackage = path: args:
      let f = import path; in
      f (builtins.intersectAttrs (builtins.functionArgs f) { inherit lib python3Packages; }
         // args);
    runCommand = name: env: script: drv name { inherit env script; };
    testers.runNixOSTest = test: drv test.name { inherit (test) nodes testScript; };
    mkShell = args: drv "shell" args;
    nix = "nix"; nginx = "nginx"; openssh = "openssh"; ruff = "ruff";
    nixpkgs-fmt = drv "nixpkgs-fmt" { };
  };
  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor;
  };
  flake = import REPO/flake.nix;
  self = flake.outputs { inherit self nixpkgs; };
in
"""


def evaluate(nix: IsolatedNix, body: str, setuptools: str = "80.9.0") -> Any:
    stub = STUB.replace("REPO", str(REPO)).replace("SETUPTOOLS", json.dumps(setuptools))
    proc = nix.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", stub + body])
    return json.loads(proc.stdout)


def test_flake_outputs_have_the_shape_flake_check_expects(nix: IsolatedNix) -> None:
    shape = evaluate(nix, """{
      top = builtins.attrNames self;
      checks = builtins.mapAttrs (_: c: builtins.mapAttrs (_: d: d.type) c) self.checks;
      apps = builtins.mapAttrs (_: a: { inherit (a.default) type program; }) self.apps;
      packages = builtins.mapAttrs (_: p: builtins.attrNames p) self.packages;
      shells = builtins.mapAttrs (_: s: s.default.type) self.devShells;
      formatter = builtins.mapAttrs (_: f: f.type) self.formatter;
      overlay = builtins.isFunction self.overlays.default;
      module = builtins.isFunction self.nixosModules.default;
    }""")
    assert shape["top"] == sorted(["apps", "checks", "devShells", "formatter",
                                   "nixosModules", "overlays", "packages"])
    for system in SYSTEMS:
        checks = shape["checks"][system]
        assert sorted(checks) == sorted([*VM_TESTS, "package"])
        assert set(checks.values()) == {"derivation"}
        app = shape["apps"][system]
        assert app["type"] == "app"
        assert app["program"] == "/stub/nix-push-queue-0.1.0/bin/nix-push-queue"
        assert shape["packages"][system] == ["default", "nix-push-queue"]
        assert shape["shells"][system] == "derivation"
        assert shape["formatter"][system] == "derivation"
    assert shape["overlay"] and shape["module"]


def test_vm_tests_get_their_scripts_and_nodes(nix: IsolatedNix) -> None:
    tests = evaluate(nix, """builtins.mapAttrs
      (_: t: { inherit (t) name; nodes = builtins.attrNames t.nodes;
               script = builtins.isString t.testScript; })
      (builtins.removeAttrs self.checks.x86_64-linux [ "package" ])""")
    for name in VM_TESTS:
        assert tests[name]["name"] == f"nix-push-queue-{name.removeprefix('vm-')}"
        assert tests[name]["script"], name
        assert tests[name]["nodes"], name


def test_package_source_and_check_phase(nix: IsolatedNix) -> None:
    package = evaluate(nix, f"""
      let p = self.packages.x86_64-linux.default;
          keeps = rel: p.src.filter "{REPO}/${{rel}}" "regular";
      in {{
        inherit (p) pname version pyproject checkPhase;
        kept = map keeps [ "pyproject.toml" "LICENSE" "src/nix_push_queue/cli.py"
                           "schema/config.schema.json" "tests/unit/test_hook.py" ];
        dropped = map keeps [ "vm-tests/lib.nix" "docs/nixos.md" "flake.nix"
                              "src/nix_push_queue/__pycache__" ];
      }}""")
    assert (package["pname"], package["version"], package["pyproject"]) == \
        ("nix-push-queue", "0.1.0", True)
    assert all(package["kept"]) and not any(package["dropped"])
    # What the phase does with that source: test_package_checkphase.py runs it.
    assert "python -m pytest tests/unit" in package["checkPhase"]


def test_package_builds_with_older_setuptools(nix: IsolatedNix) -> None:
    # nixpkgs releases still ship setuptools 75; pyproject.toml must not need newer.
    assert evaluate(nix, "self.packages.x86_64-linux.default.pname", setuptools="75.8.2") == \
        "nix-push-queue"
