# The cache machine is shut down while the builder builds: builds succeed, and every path
# arrives after the cache machine is back.
{ pkgs, lib' }:
lib'.test "outage" {
  nodes.builder = lib'.builder {
    targets = [ (lib'.target { url = "http://cache"; }) ];
  };
  nodes.cache = lib'.httpCache { root = "/var/lib/http-cache"; upload = true; };
}
