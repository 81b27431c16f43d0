# The module's `settings` as the JSON document the schema describes, in builtins only.
# Unset typed options are null in the module; the schema has no key whose null means
# something other than its default, so dropping nulls (recursively) is lossless and keeps
# `nix-push-queue validate` from rejecting `"secret_key_file": null`.
let
  strip = value:
    if builtins.isAttrs value then
      builtins.mapAttrs (_: strip)
        (builtins.removeAttrs value
          (builtins.filter (name: value.${name} == null) (builtins.attrNames value)))
    else if builtins.isList value then map strip value
    else value;
in
strip
