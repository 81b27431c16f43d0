# The accounts the NixOS module defines for the daemon, in builtins only (a test here
# evaluates it without nixpkgs).
#
#   import ./accounts.nix { config = <defaults-filled document>; }
#   -> { users = { <name> = { group; description; }; }; groups = [ <name> ... ];
#        external = <user the system must define itself, or null>; }
#
# As nixpkgs' service modules do, the module owns only the account named after the service:
# `service.user = "nix-push-queue"` creates that system user (and its group). Any other name
# is an account the system already has (a normal user, `nobody`, one from another module):
# defining it again would clash with its own `group` and `description`, so the module leaves
# it alone and only warns when no module defines it.
{ config }:
let
  owned = "nix-push-queue";
  inherit (config.service) user group;
  ownsUser = user == owned;
  named = builtins.filter (g: g != null && g != "root") [
    (if ownsUser && group == null then owned else null)
    group
    config.queue.socket_group
  ];
in
{
  users = if ownsUser then {
    ${owned} = {
      group = if group != null then group else owned;
      description = "nix-push-queue daemon";
    };
  } else { };
  # Groups are declared, never given attributes, so naming one the system already has
  # merges with it instead of clashing.
  groups = builtins.foldl' (seen: g: if builtins.elem g seen then seen else seen ++ [ g ]) [ ] named;
  external = if user != null && user != "root" && !ownsUser then user else null;
}
