# Pieces shared by the VM tests: the scenarios package in the store, node configurations
# for a builder (the module enabled, keys generated at boot) and for caches.
{ pkgs, nixosModule }:
let
  c = import ./constants.nix;
in
rec {
  inherit nixosModule;
  scenarios = pkgs.runCommand "nix-push-queue-scenarios" { } ''
    mkdir -p "$out"
    cp -r ${./scenarios} "$out/scenarios"
  '';
  scripts = import ./scripts.nix { scenarios = "${scenarios}"; };

  test = name: args: pkgs.testers.runNixOSTest ({
    name = "nix-push-queue-${name}";
    testScript = scripts.${name};
  } // args);

  # Keys a test needs, generated inside the VM at first boot, before the daemon starts
  # (its LoadCredential= needs the files). Kept across the crash test's reboot.
  keyService = { config, pkgs, utils, ... }: {
    description = "Generate nix-push-queue test keys (never in the Nix store)";
    wantedBy = [ "multi-user.target" ];
    requiredBy = [ "nix-push-queue.service" ];
    before = [ "nix-push-queue.service" ];
    unitConfig.ConditionPathExists = "!${c.secretKey}";
    path = [ config.nix.package pkgs.openssh pkgs.coreutils ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      UMask = "0077";
      ExecStart = utils.escapeSystemdExecArgs [
        (pkgs.writeShellScript "npq-test-keys" ''
          set -eu
          mkdir -p ${c.keysDir}
          ssh-keygen -q -t ed25519 -N "" -C npq-test -f ${c.sshKey}
          access="npq$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
          secret="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
          printf '[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n' \
            "$access" "$secret" > ${c.awsCredentials}.tmp
          mv ${c.awsCredentials}.tmp ${c.awsCredentials}
          # Last: its presence is this unit's "already done" condition.
          nix-store --generate-binary-cache-key ${c.keyName} ${c.secretKey}.tmp ${c.publicKey}
          mv ${c.secretKey}.tmp ${c.secretKey}
        '')
      ];
    };
  };

  # A machine building with the hook configured, pushing to `targets`.
  builder = { targets, settings ? { } }: { config, lib, pkgs, utils, ... }: {
    imports = [ nixosModule ];
    virtualisation.writableStore = true;
    # The crash test reboots with work pending: built paths must survive it.
    virtualisation.writableStoreUseTmpfs = false;
    # No cache.nixos.org in a VM without Internet: every build would wait on it first.
    nix.settings.substituters = lib.mkForce [ ];
    nix.settings.experimental-features = [ "nix-command" ];

    services.nix-push-queue = {
      enable = true;
      settings = lib.recursiveUpdate
        {
          inherit targets;
          substituters.keep_defaults = false;
          # Short backoff: outages in these tests last seconds to a minute.
          queue.retry = { initial_delay = 1; max_delay = 5; max_attempts = 1000; };
          # A static user, so a file:// cache directory can belong to it.
          service.user = "nix-push-queue";
          service.log_level = "debug";
        }
        settings;
    };
    systemd.services.npq-test-keys = keyService { inherit config pkgs utils; };
    systemd.tmpfiles.rules = [ "d ${c.fileCache} 0755 nix-push-queue nix-push-queue -" ];
  };

  target = { name ? "cache", url, extra ? { } }: {
    inherit name url;
    secret_key_file = c.secretKey;
  } // extra;

  # nginx serving `root` over HTTP; with `upload`, accepting PUT as a Nix binary cache.
  httpCache = { root, upload }: { lib, ... }: {
    services.nginx = {
      enable = true;
      virtualHosts.cache = {
        default = true;
        inherit root;
        locations."/".extraConfig = lib.optionalString upload ''
          dav_methods PUT;
          create_full_put_path on;
          dav_access user:rw group:r all:r;
          client_max_body_size 0;
        '';
      };
    };
    systemd.services.nginx.serviceConfig.ReadWritePaths = lib.mkIf upload [ root ];
    systemd.tmpfiles.rules = lib.mkIf upload [ "d ${root} 0755 nginx nginx -" ];
    networking.firewall.allowedTCPPorts = [ 80 ];
  };
}
