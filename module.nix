# NixOS module: services.nix-push-queue.
#
# One source of truth: the systemd units, the post-build-hook wrapper and the daemon's
# config.json are produced by the package's own `nix-push-queue generate --flavor nixos`
# in a derivation (after `nix-push-queue validate`), so what runs here is what the generator
# writes everywhere else. The nix.conf settings are computed in Nix by nix/nix-settings.nix,
# which the test suite compares with the generator's fragment (a derivation's output cannot
# feed `nix.settings` without import-from-derivation).
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkIf mkOption types;

  cfg = config.services.nix-push-queue;
  json = pkgs.formats.json { };

  schema = builtins.fromJSON (builtins.readFile ./schema/config.schema.json);
  fillDefaults = import ./nix/schema-defaults.nix schema;
  toDocument = import ./nix/settings-json.nix;
  layout = import ./nix/layout.nix;

  document = toDocument cfg.settings;
  # Everything the schema defaults, filled the same way the Python side fills it.
  filled = fillDefaults document;
  settingsFile = json.generate "nix-push-queue-settings.json" document;

  # Validated at build time by the package itself; the build fails with the validator's
  # `FILE:LINE: field: message` lines when the settings are wrong. With --prefix $out every
  # reference between the files (ExecStart's --config, the hook path) is a store path, so a
  # settings change changes the unit and NixOS restarts the daemon on switch.
  generated = pkgs.runCommand "nix-push-queue-generated"
    {
      nativeBuildInputs = [ cfg.package ];
      preferLocalBuild = true;
    }
    ''
      # The build sandbox is not the host: the daemon runs the trust check there at start.
      nix-push-queue validate --no-trust-check ${settingsFile}
      nix-push-queue generate ${settingsFile} --flavor nixos --out "$out" --prefix "$out" \
        --executable ${lib.escapeShellArg (lib.getExe cfg.package)}
    '';

  hasTargets = filled.targets != [ ];
  hookPath = "${generated}/${layout.hook}";
  nixSettings = import ./nix/nix-settings.nix { config = filled; hook = hookPath; };

  # The daemon's user: systemd's DynamicUser names it after the unit when service.user is null.
  daemonUser = if filled.service.user == null then "nix-push-queue" else filled.service.user;
  accounts = import ./nix/accounts.nix { config = filled; };
  # ssh:// and ssh-ng:// targets are signed with `nix store sign` in the local store, which
  # the nix-daemon allows to trusted users only.
  signsLocally = builtins.any
    (t: builtins.match "ssh(-ng)?://.*" t.url != null && t ? secret_key_file)
    filled.targets;

  # keep_defaults = false drops NixOS's cache.nixos.org entries from the merged lists and
  # nothing else (see nix/keep-defaults.nix for why a filter rather than a priority).
  keepDefaults = import ./nix/keep-defaults.nix { config = filled; settings = nixSettings; };
  dropDefaults = name: values: if cfg.enable then keepDefaults name values else values;
  # Declared again only to add `apply`: the type merges with nix.nix's declaration, which
  # has no `apply` of its own (the module system allows one per option).
  filteredList = name: mkOption {
    type = types.listOf types.str;
    apply = dropDefaults name;
  };

  targetType = types.submodule {
    freeformType = json.type;
    options = {
      name = mkOption {
        type = types.str;
        description = "Short name of the target, used in status, metrics and credential names.";
        example = "cache";
      };
      url = mkOption {
        type = types.str;
        description = "Store URL to push to, as `nix copy --to` takes it.";
        example = "s3://example-nix-cache?region=eu-west-1";
      };
      # Secrets are strings, never `types.path`: a path literal would be copied into the
      # world-readable store. systemd's LoadCredential hands them to the daemon.
      secret_key_file = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Signing key file (outside the Nix store), loaded with LoadCredential.";
        example = "/etc/nix/cache-priv-key.pem";
      };
      public_key = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Public half of `secret_key_file`, `NAME:BASE64`.";
      };
      ssh_key_file = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "SSH private key for ssh:// and ssh-ng:// targets, loaded with LoadCredential.";
      };
      credentials_file = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "AWS shared credentials file for s3:// targets, loaded with LoadCredential.";
      };
      environment_file = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "`KEY=value` lines of AWS_* variables for this s3:// target (boto3 transport), loaded with LoadCredential.";
      };
    };
  };
in
{
  options.nix.settings = mkOption {
    type = types.submodule {
      options.substituters = filteredList "substituters";
      options.trusted-public-keys = filteredList "trusted-public-keys";
    };
  };

  options.services.nix-push-queue = {
    enable = lib.mkEnableOption "nix-push-queue: push build outputs to binary caches from a durable queue";

    package = lib.mkPackageOption pkgs "nix-push-queue" { };

    settings = mkOption {
      description = ''
        Configuration, in the shape of `schema/config.schema.json` (the YAML/JSON config
        with snake_case keys). Defaults come from the schema. Validated at build time by
        `nix-push-queue validate`.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          targets = [{
            name = "cache";
            url = "s3://example-nix-cache?region=eu-west-1";
            secret_key_file = "/etc/nix/cache-priv-key.pem";
            public_key = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
          }];
          filters.skip_signed_by = [ "cache.nixos.org-1" ];
        }
      '';
      type = types.submodule {
        freeformType = json.type;
        options.targets = mkOption {
          type = types.listOf targetType;
          default = [ ];
          description = "Where built paths are pushed. Empty: a consumer-only host (no hook, no daemon).";
        };
      };
    };

    configFile = mkOption {
      type = types.path;
      readOnly = true;
      description = "The daemon's generated config.json (every default filled in).";
    };
  };

  config = mkIf cfg.enable (lib.mkMerge [
    {
      assertions = import ./nix/checks.nix { config = filled; storeDir = builtins.storeDir; }
        ++ [
        {
          assertion = config.nix.enable or true;
          message = "services.nix-push-queue needs Nix on this system (nix.enable = true).";
        }
      ];

      services.nix-push-queue.configFile = "${generated}/${layout.config}";

      nix.settings = nixSettings;

      environment.systemPackages = [ cfg.package ];
      # Builds (and so validates) the settings even on a consumer-only host, where nothing
      # else refers to the generated files.
      system.checks = [ generated ];

      warnings = lib.optional
        (filled.service.user == null
          && builtins.any (t: builtins.match "file://.*" t.url != null) filled.targets)
        ("services.nix-push-queue: a file:// target with settings.service.user unset: the "
          + "daemon runs as a systemd DynamicUser, whose uid owns no directory, so it can only "
          + "write a world-writable cache directory; set settings.service.user (\"nix-push-queue\" "
          + "is created by the module) and give that user the directory.")
      ++ lib.optional
        (hasTargets && accounts.external != null && !(config.users.users ? ${accounts.external}))
        ("services.nix-push-queue: settings.service.user = \"${accounts.external}\" names no "
          + "account in users.users, and the module creates only \"nix-push-queue\": define "
          + "users.users.${accounts.external} (isSystemUser = true; group = ...;), or use "
          + "\"nix-push-queue\". (An account from LDAP or the like needs nothing; with no "
          + "account at all, systemd cannot start the daemon.)");
    }

    (mkIf hasTargets {
      systemd.packages = [ generated ];
      # `status`, `wait`, `push` ... find the socket through the default --config path.
      environment.etc."nix-push-queue/config.json".source = cfg.configFile;

      systemd.sockets.nix-push-queue.wantedBy = [ "sockets.target" ];
      # The hook only writes a spool entry: this path unit is what starts a stopped daemon
      # when a build finishes (the socket starts it for `push` and `status`).
      systemd.paths.nix-push-queue.wantedBy = [ "paths.target" ];
      systemd.services.nix-push-queue = {
        # Started at boot too, not only by the socket: pending work left by a crash or a
        # reboot resumes without waiting for the next build.
        wantedBy = [ "multi-user.target" ];
        # `nix copy` talks to the local nix-daemon; ssh targets need ssh.
        path = [ config.nix.package pkgs.openssh ];
      };

      users.users = lib.mapAttrs
        (_: u: {
          isSystemUser = lib.mkDefault true;
          group = lib.mkDefault u.group;
          inherit (u) description;
        })
        accounts.users;
      users.groups = lib.genAttrs accounts.groups (_: { });

      nix.settings.trusted-users = mkIf signsLocally [ daemonUser ];
    })

    # GC roots of queued paths (docs/gc-roots.md): the packaged unit's ExecStartPre applies
    # the generated tmpfiles rule (the directory, its owner and mode: the hook may have made
    # it first) before every start; a DynamicUser daemon writes it through this static group,
    # not named after the unit: systemd refuses a DynamicUser whose name a static group has.
    (mkIf (hasTargets && filled.queue.gc_roots.enable) {
      users.groups = mkIf (filled.service.user == null) { nix-push-queue-gcroots = { }; };
    })
  ]);
}
