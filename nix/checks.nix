# Settings the NixOS module refuses at evaluation time, in builtins only so a test here can
# evaluate them. Each entry is a NixOS assertion: { assertion = bool; message = "..."; }.
# `nix-push-queue validate` runs again at build time and has the last word; these catch the
# mistakes that are NixOS-specific or cheaper to report before anything is built.
#
#   import ./checks.nix { config = <defaults-filled document>; storeDir = builtins.storeDir; }
{ config, storeDir }:
let
  opt = "services.nix-push-queue.settings";
  inStore = path: builtins.substring 0 (builtins.stringLength storeDir + 1) path == storeDir + "/";
  indexed = builtins.genList (i: { inherit i; t = builtins.elemAt config.targets i; })
    (builtins.length config.targets);
  secretKeys = [ "secret_key_file" "ssh_key_file" "credentials_file" "environment_file" ];
in
[
  {
    assertion = config.nix.store_dir == storeDir;
    message = "${opt}.nix.store_dir is ${config.nix.store_dir}, but this system's Nix store is ${storeDir}; remove the setting.";
  }
]
++ builtins.concatMap
  ({ i, t }:
    map
      (key: {
        assertion = !(t ? ${key}) || !(inStore t.${key});
        message = "${opt}.targets.${toString i}.${key} is inside ${storeDir}, which every user can read: keep secrets outside the store (a string such as \"/run/keys/cache.sec\" or \"/etc/nix/cache-priv-key.pem\", never a Nix path literal like ./key.sec).";
      })
      secretKeys
    ++ [
      {
        # Reported once, at the second use of a name.
        assertion = builtins.all (j: (builtins.elemAt config.targets j).name != t.name)
          (builtins.genList (j: j) i);
        message = "${opt}.targets.${toString i}: the name \"${t.name}\" is used by an earlier target too; give each target its own name.";
      }
      {
        assertion = !t.substitute || t ? public_key;
        message = "${opt}.targets.${toString i} (\"${t.name}\") has substitute = true but no public_key; add the cache's public key, or Nix will refuse its paths.";
      }
    ])
  indexed
++ map
  (i: {
    assertion = !(inStore (builtins.elemAt config.nix.secret_key_files i));
    message = "${opt}.nix.secret_key_files.${toString i} is inside ${storeDir}; keep signing keys outside the store.";
  })
  (builtins.genList (i: i) (builtins.length config.nix.secret_key_files))
