# expect: 5: targets[0].url: characters
{
  targets = [ {
    name = "a";
    url = builtins.readFile /etc/passwd;
  } ];
}
