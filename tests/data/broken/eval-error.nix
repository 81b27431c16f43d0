# expect: 4: : nix-instantiate failed
let cacheDir = "/srv/cache"; in
{
  targets = [ { name = "cache"; url = "file://${cacheDir.path}"; } ];
}
