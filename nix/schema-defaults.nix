# Fill a config document with the defaults of schema/config.schema.json, in Nix builtins
# only (no nixpkgs lib), so the NixOS module and the tests read the same defaults that the
# Python side applies (config/schema.py: fill_defaults). The schema stays the one place where
# defaults are written down.
#
#   import ./schema-defaults.nix schema document  ->  document with every default filled
schema:
let
  # "#/$defs/name" -> schema.$defs.name
  lookup = ref:
    let parts = builtins.filter builtins.isString (builtins.split "/" (builtins.substring 2 (-1) ref));
    in builtins.foldl' (node: part: node.${part}) schema parts;

  # Follow local $refs; the referring node's own keywords win, as in the Python version.
  resolve = node:
    if builtins.isAttrs node && node ? "$ref"
    then resolve (lookup node."$ref") // builtins.removeAttrs node [ "$ref" ]
    else node;

  missingDefaults = props: value:
    builtins.listToAttrs (builtins.concatMap
      (name:
        let sub = resolve props.${name}; in
        if !(value ? ${name}) && sub ? default then [{ inherit name; value = sub.default; }] else [ ])
      (builtins.attrNames props));

  fill = node': value:
    let node = resolve node'; in
    if builtins.isAttrs value then
      let props = node.properties or { }; in
      builtins.mapAttrs (name: v: if props ? ${name} then fill props.${name} v else v)
        (value // missingDefaults props value)
    else if builtins.isList value && builtins.isAttrs (node.items or null) then
      map (fill node.items) value
    else value;
in
fill schema
