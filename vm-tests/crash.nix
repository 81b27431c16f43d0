# Work pending (cache machine down) while the daemon is SIGKILLed and then the builder
# crashes (power cut) and reboots: every path arrives once the cache is back.
{ pkgs, lib' }:
lib'.test "crash" {
  nodes.builder = lib'.builder {
    targets = [ (lib'.target { url = "http://cache"; }) ];
  };
  nodes.cache = lib'.httpCache { root = "/var/lib/http-cache"; upload = true; };
}
