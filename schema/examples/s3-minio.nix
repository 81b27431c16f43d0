# The same shape as the YAML examples, as a Nix expression (evaluated with
# `nix-instantiate --eval --strict --json`): an S3-compatible MinIO server on the LAN.
# This is also what the NixOS module's `services.nix-push-queue.settings` takes.
let
  bucket = "nix-cache";
  endpoint = "minio.example.org:9000";
in
{
  version = 1;
  targets = [
    {
      name = "minio";
      url = "s3://${bucket}";
      options = {
        inherit endpoint;
        region = "us-east-1";
        scheme = "http";
      };
      secret_key_file = "/etc/nix/cache-priv-key.pem";
      public_key = "cache.example.org-1:VOsZss/2s3FybA2rKGT6XeBPtsftE5JFb+7FR9A1Z4w=";
      # A credentials file with [default] aws_access_key_id / aws_secret_access_key.
      credentials_file = "/etc/nix-push-queue/minio-credentials";
      substitute = true;
    }
  ];
  filters.skip_signed_by = [ "cache.nixos.org-1" ];
}
