"""Scenario steps shared by the NixOS VM tests, the Debian QEMU harness and a local stand-in.

Each scenario is a plain function over machines with the NixOS test driver's method names
(`machine.Machine`) and shell command strings; everything that differs between the places a
scenario runs (how to build, the cache URL, key files, how to kill the daemon) comes in as a
frozen `Params`. Nothing here imports nix_push_queue: the NixOS test driver runs these
modules without the package installed.
"""
