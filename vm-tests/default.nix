# Every NixOS VM test, by name: `checks.<system>` in flake.nix. Each needs Linux and KVM.
{ pkgs, nixosModule }:
let
  lib' = import ./lib.nix { inherit pkgs nixosModule; };
  test = file: import file { inherit pkgs; lib' = lib'; };
in
{
  vm-file-cache = test ./file-cache.nix;
  vm-ssh-ng = test ./ssh-ng.nix;
  vm-s3 = test ./s3.nix;
  vm-outage = test ./outage.nix;
  vm-crash = test ./crash.nix;
  vm-consumer = test ./consumer.nix;
}
