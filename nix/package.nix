# The nix-push-queue package: the Python application with its CLI, tested in the build.
{ lib, python3Packages }:

let
  pyproject = builtins.fromTOML (builtins.readFile ../pyproject.toml);
  # Only what the package and its unit tests need: editing the NixOS tests, docs or
  # benchmarks does not rebuild it. LICENSE is picked up by setuptools.
  keep = [ "pyproject.toml" "README.md" "LICENSE" "src" "schema" "tests" ];
  root = toString ../.;
  junk = [ "__pycache__" ".mypy_cache" ".pytest_cache" ".ruff_cache" ".hypothesis" ];

  setuptools = python3Packages.setuptools;
in
python3Packages.buildPythonApplication
{
  pname = pyproject.project.name;
  inherit (pyproject.project) version;
  pyproject = true;

  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: type:
      let
        rel = lib.removePrefix (root + "/") (toString path);
        top = builtins.head (lib.splitString "/" rel);
      in
      builtins.elem top keep && !(builtins.elem (baseNameOf path) junk);
  };

  build-system = [ setuptools ];

  dependencies = with python3Packages; [
    jsonschema
    jinja2
    pyyaml
    prometheus-client
    # The boto3 S3 transport (daemon/s3/): signed uploads on any Nix. pip users opt in
    # with the `s3` extra; the NixOS package always has it.
    boto3
  ];

  nativeCheckInputs = with python3Packages; [
    pytest
    pytest-timeout
    hypothesis
  ];

  # The unit tests only: integration tests need nginx, sshd, a writable Nix store and
  # network namespaces, which the build sandbox does not have (the VM tests cover them).
  # A plain checkPhase rather than pytestCheckHook's flags, which change between releases;
  # buildPythonApplication runs it as the installCheckPhase, after pypaInstallPhase has
  # put $out's site-packages on PYTHONPATH. tests/integration/test_package_checkphase.py
  # runs this very phase on the source `keep` leaves, the way the build does (not root, no
  # network, python3's own interpreter with the package on PYTHONPATH, no nix on PATH).
  checkPhase = ''
    runHook preCheck
    HOME="$TMPDIR" python -m pytest tests/unit -m "not integration and not vm" \
      -p no:cacheprovider
    runHook postCheck
  '';

  pythonImportsCheck = [ "nix_push_queue" ];

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.mit;
    mainProgram = "nix-push-queue";
    platforms = lib.platforms.linux;
  };
}
