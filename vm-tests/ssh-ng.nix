# A builder pushing to a second machine's store over ssh-ng://, signing with its own key;
# the path comes back from that store with signatures required.
{ pkgs, lib' }:
let c = import ./constants.nix; in
lib'.test "ssh-ng" {
  nodes.builder = { lib, ... }: {
    imports = [
      (lib'.builder {
        targets = [
          (lib'.target {
            url = "ssh-ng://root@cache";
            extra.ssh_key_file = c.sshKey;
          })
        ];
      })
    ];
    # The cache's host key is made at its first boot; this is a test network.
    programs.ssh.extraConfig = ''
      Host cache
        StrictHostKeyChecking no
        UserKnownHostsFile /dev/null
    '';
  };
  nodes.cache = { lib, ... }: {
    virtualisation.writableStore = true;
    services.openssh.enable = true;
    services.openssh.settings.PermitRootLogin = "prohibit-password";
    nix.settings.substituters = lib.mkForce [ ];
    nix.settings.experimental-features = [ "nix-command" ];
    # `!include`: a missing file is ignored; the scenario writes the builder's public key
    # there (made at run time), and every ssh session's nix-daemon --stdio reads it.
    nix.extraOptions = "!include ${c.cacheTrustConf}";
  };
}
