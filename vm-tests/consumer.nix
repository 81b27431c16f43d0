# A consumer: the module with no targets (no hook, no daemon), substituting from the
# builder's cache, served by nginx, trusting the builder's key (generated at boot, so
# passed at run time with --option trusted-public-keys).
{ pkgs, lib' }:
let c = import ./constants.nix; in
lib'.test "consumer" {
  nodes.builder = {
    imports = [
      (lib'.builder { targets = [ (lib'.target { url = "file://${c.fileCache}"; }) ]; })
      (lib'.httpCache { root = c.fileCache; upload = false; })
    ];
  };
  nodes.consumer = { lib, ... }: {
    imports = [ lib'.nixosModule ];
    virtualisation.writableStore = true;
    nix.settings.experimental-features = [ "nix-command" ];
    services.nix-push-queue = {
      enable = true;
      settings.substituters = {
        urls = [ "http://builder" ];
        keep_defaults = false;
      };
    };
  };
}
