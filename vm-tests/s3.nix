# A builder pushing to an S3 bucket on a MinIO machine, with AWS credentials handed to the
# daemon by LoadCredential (credentials_file); substituted back over the bucket's HTTP
# endpoint with signatures required.
{ pkgs, lib' }:
let c = import ./constants.nix; in
lib'.test "s3" {
  nodes.builder = lib'.builder {
    targets = [
      (lib'.target {
        url = "s3://${c.bucket}";
        extra = {
          credentials_file = c.awsCredentials;
          options = { endpoint = "http://cache:9000"; region = c.s3Region; };
        };
      })
    ];
  };
  nodes.cache = { pkgs, ... }: {
    services.minio = {
      enable = true;
      region = c.s3Region;
      # A string, so the file stays outside the store (the option is `nullOr path`, used as
      # EnvironmentFile=); written at first boot by npq-minio-root-env below.
      rootCredentialsFile = c.minioRootEnv;
    };
    # The minio module gives minio.service ConditionPathExists= on this file and watches it
    # with minio-root-credentials.path (PathChanged= -> restart MinIO). Writing it before
    # that path unit starts watching keeps the first write from restarting MinIO under the
    # test; hence no default dependencies (they would order this after basic.target, which
    # comes after every path unit).
    systemd.services.npq-minio-root-env = {
      wantedBy = [ "multi-user.target" ];
      requiredBy = [ "minio.service" ];
      after = [ "local-fs.target" ];
      before = [ "minio.service" "minio-root-credentials.path" ];
      unitConfig = {
        DefaultDependencies = false;
        ConditionPathExists = "!${c.minioRootEnv}";
      };
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; UMask = "0077"; };
      script = ''
        password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        printf 'MINIO_ROOT_USER=npqroot\nMINIO_ROOT_PASSWORD=%s\n' "$password" > ${c.minioRootEnv}
      '';
    };
    environment.systemPackages = [ pkgs.minio-client pkgs.curl ];
    networking.firewall.allowedTCPPorts = [ 9000 ];
  };
}
