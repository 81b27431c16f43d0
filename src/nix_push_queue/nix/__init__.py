"""The Nix layer: running Nix commands, isolated stores, store paths, Nix's output dialects."""
