# nix.conf settings for a config, in Nix builtins only (no nixpkgs lib), so the same function
# serves the NixOS module (`nix.settings`) and a test here that compares it, key by key, with
# the fragment the Python generator writes (etc/nix/nix-push-queue.conf).
#
#   import ./nix-settings.nix { config = <defaults-filled document>; hook = "/path/to/hook"; }
#   -> { "extra-substituters" = [ ... ]; "extra-trusted-public-keys" = [ ... ];
#        "secret-key-files" = [ ... ]; "post-build-hook" = "..."; }
#
# Keys with nothing to say are left out, as the generator leaves out their lines; with
# keep_defaults = false the two lists replace Nix's own even when empty.
{ config, hook }:
let
  unique = builtins.foldl' (seen: x: if builtins.elem x seen then seen else seen ++ [ x ]) [ ];

  # A target's URL as a substituter: its own store parameters plus `priority`; never a
  # secret (the schema forbids `secret-key` in the URL and in `options`).
  withParams = url: params:
    if params == [ ] then url
    else url + (if builtins.match ".*[?].*" url == null then "?" else "&")
      + builtins.concatStringsSep "&" params;
  paramText = v:
    if builtins.isBool v then (if v then "true" else "false") else quote (toString v);
  # Percent-encoding of a query value, as Python's urllib.parse.quote(v, safe=":/,@") does
  # for ASCII (letters, digits, "_.-~" and ":/,@" stay; everything else becomes %XX).
  unsafe = [ "%" " " "!" "\"" "#" "$" "&" "'" "(" ")" "*" "+" ";" "<" "=" ">" "?" "[" "\\" "]" "^" "`" "{" "|" "}" ];
  hex = c: builtins.elemAt [ "25" "20" "21" "22" "23" "24" "26" "27" "28" "29" "2A" "2B" "3B" "3C" "3D" "3E" "3F" "5B" "5C" "5D" "5E" "60" "7B" "7C" "7D" ] c;
  quote = builtins.replaceStrings unsafe (builtins.genList (i: "%" + hex i) (builtins.length unsafe));
  substituterUrl = t:
    withParams t.url
      (map (k: "${k}=${paramText t.options.${k}}") (builtins.attrNames t.options)
        ++ (if t ? priority then [ "priority=${toString t.priority}" ] else [ ]));

  served = builtins.filter (t: t.substitute) config.targets;
  urls = unique (map substituterUrl served ++ config.substituters.urls);
  keys = unique (builtins.concatMap (t: if t ? public_key then [ t.public_key ] else [ ]) served
    ++ config.substituters.trusted_public_keys);

  prefix = if config.substituters.keep_defaults then "extra-" else "";
  nonEmpty = name: value: if value == [ ] then { } else { ${name} = value; };
  replacing = name: value:
    if config.substituters.keep_defaults then nonEmpty name value else { ${name} = value; };
  hookWanted = config.targets != [ ] && config.hook.enable;
in
replacing "${prefix}substituters" urls
// replacing "${prefix}trusted-public-keys" keys
// nonEmpty "secret-key-files" config.nix.secret_key_files
// (if hookWanted then { "post-build-hook" = hook; } else { })
