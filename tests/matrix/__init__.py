"""The Nix version matrix: Debian roots from debootstrap, each with its own nix-bin and Python."""
