# expect: 5: targets[1].name: duplicate target name
{
  targets = [
    { name = "cache"; url = "file:///srv/cache"; }
    { name = "cache"; url = "https://cache.example.org"; }
  ];
}
