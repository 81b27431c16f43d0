# Where `nix-push-queue generate --flavor nixos --out $out --prefix $out` puts the files the
# module refers to (checked against the generator by tests/integration/test_nix_module_build.py).
{
  hook = "etc/nix-push-queue/post-build-hook";
  config = "etc/nix-push-queue/config.json";
  fragment = "etc/nix/nix-push-queue.conf";
  units = [
    "lib/systemd/system/nix-push-queue.socket"
    "lib/systemd/system/nix-push-queue.service"
    "lib/systemd/system/nix-push-queue.path"
  ];
  # the GC roots directory (docs/gc-roots.md)
  tmpfiles = "lib/tmpfiles.d/nix-push-queue.conf";
}
