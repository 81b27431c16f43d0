# What `substituters.keep_defaults = false` removes from the system's nix.settings, in
# builtins only (a test here evaluates it without nixpkgs).
#
#   import ./keep-defaults.nix { config = <defaults-filled document>; settings = <nix-settings.nix result>; }
#   -> name: values: values without NixOS's own default for `name`
#
# nixos/modules/config/nix.nix adds cache.nixos.org to `substituters` (mkAfter) and its key
# to `trusted-public-keys`, both at normal priority, so no priority can drop them without
# dropping every other module's and the user's own entries too. The module instead filters
# the merged lists (an `apply` on those two options): exactly these two entries go, unless
# the config lists them itself; everything any module defines stays, and the user's mkForce
# still wins.
{ config, settings }:
let
  nixosDefaults = {
    substituters = [ "https://cache.nixos.org/" ];
    trusted-public-keys = [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
  };
  own = name: settings.${name} or [ ];
in
name: values:
if config.substituters.keep_defaults then values
else builtins.filter
  (v: !(builtins.elem v nixosDefaults.${name}) || builtins.elem v (own name))
  values
