# One machine, a file:// binary cache: build with the hook, the queue signs and pushes,
# delete the path, substitute it back with signatures required.
{ pkgs, lib' }:
let c = import ./constants.nix; in
lib'.test "file-cache" {
  nodes.machine = lib'.builder {
    targets = [ (lib'.target { url = "file://${c.fileCache}"; }) ];
  };
}
