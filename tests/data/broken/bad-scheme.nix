# expect: 6: targets[0].url: file://, http://
{
  targets = [
    {
      name = "cache";
      url = "rsync://cache.example.org";
    }
  ];
}
