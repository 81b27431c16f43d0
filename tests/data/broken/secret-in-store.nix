# expect: 7: targets[0].secret_key_file: world-readable
{
  targets = [
    {
      name = "cache";
      url = "file:///srv/cache";
      secret_key_file = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-key.sec";
    }
  ];
}
