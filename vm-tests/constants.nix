# Names shared by the VM tests' node configs and their test scripts (builtins only, so the
# test suite can evaluate the scripts without nixpkgs).
rec {
  keyName = "npq-test-1";
  # Every key is generated inside the VM at boot by npq-test-keys.service (lib.nix): nothing
  # secret is ever in the Nix store.
  keysDir = "/var/lib/npq-keys";
  secretKey = "${keysDir}/cache.sec";
  publicKey = "${keysDir}/cache.pub";
  sshKey = "${keysDir}/ssh";
  sshPublicKey = "${keysDir}/ssh.pub";
  awsCredentials = "${keysDir}/aws-credentials";
  minioRootEnv = "/var/lib/minio-root.env";
  fileCache = "/var/lib/nix-cache";
  # The ssh-ng cache machine's nix.conf includes this; the scenario adds the builder's
  # public key to it (the cache must trust a path's signature to accept it).
  cacheTrustConf = "/var/lib/npq-trust/nix.conf";
  bucket = "nix-cache";
  s3Region = "us-east-1";
  # Build through the nix-daemon, as a normal user would: the daemon runs the hook.
  build = "NIX_REMOTE=daemon nix-build --no-out-link";
  killDaemon = "systemctl kill --signal=SIGKILL nix-push-queue.service";
}
