# The VM tests' Python test scripts, in builtins only: the test suite evaluates them here
# and runs each against stand-in machines (tests/unit/test_scenarios_vm_scripts.py), since
# the NixOS tests themselves need KVM and nixpkgs.
#
#   import ./scripts.nix { scenarios = "<directory holding the scenarios package>"; }
{ scenarios }:
let
  c = import ./constants.nix;
  py = builtins.toJSON; # a JSON string is a valid Python string literal
  # The driver type-checks test scripts with mypy, which cannot see the scenarios package:
  # importlib keeps the imported module typed as a plain module.
  prelude = module: ''
    import importlib
    import sys

    sys.path.insert(0, ${py scenarios})
    scenario = importlib.import_module(${py "scenarios.${module}"})
    start_all()
  '';
in
{
  file-cache = prelude "file_cache" + ''
    scenario.run(
        machine,
        scenario.Params(
            cache_url=${py "file://${c.fileCache}"},
            public_key_file=${py c.publicKey},
            build=${py c.build},
        ),
        subtest=subtest,
    )
  '';

  ssh-ng = prelude "ssh_ng" + ''
    scenario.run(
        builder,
        cache,
        scenario.Params(
            store_url=${py "ssh-ng://root@cache?ssh-key=${c.sshKey}"},
            public_key_file=${py c.publicKey},
            ssh_public_key_file=${py c.sshPublicKey},
            trust_conf=${py c.cacheTrustConf},
            build=${py c.build},
        ),
        subtest=subtest,
    )
  '';

  s3 = prelude "s3" + ''
    scenario.run(
        builder,
        cache,
        scenario.Params(
            bucket=${py c.bucket},
            push_url=${py "s3://${c.bucket}?endpoint=http://cache:9000&region=${c.s3Region}"},
            http_url=${py "http://cache:9000/${c.bucket}"},
            public_key_file=${py c.publicKey},
            credentials_file=${py c.awsCredentials},
            root_env_file=${py c.minioRootEnv},
            build=${py c.build},
        ),
        subtest=subtest,
    )
  '';

  outage = prelude "outage" + ''
    scenario.run(
        builder,
        cache,
        scenario.Params(
            cache_url="http://cache",
            public_key_file=${py c.publicKey},
            cache_unit="nginx.service",
            build=${py c.build},
        ),
        subtest=subtest,
    )
  '';

  crash = prelude "crash" + ''
    scenario.run(
        builder,
        cache,
        scenario.Params(
            cache_url="http://cache",
            public_key_file=${py c.publicKey},
            cache_unit="nginx.service",
            kill_daemon=${py c.killDaemon},
            build=${py c.build},
        ),
        subtest=subtest,
    )
  '';

  consumer = prelude "consumer" + ''
    scenario.run(
        builder,
        consumer,
        scenario.Params(
            push_url=${py "file://${c.fileCache}"},
            public_key_file=${py c.publicKey},
            build=${py c.build},
        ),
        subtest=subtest,
    )
  '';
}
