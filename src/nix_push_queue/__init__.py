"""nix-push-queue: push Nix build outputs to binary caches from a durable queue."""

__version__ = "0.1.0"
