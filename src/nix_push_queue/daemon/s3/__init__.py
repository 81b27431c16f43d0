"""The staged S3 transport: Nix writes a `file://` cache into a staging directory, boto3
carries its files to the bucket with signed requests, on any Nix (see transport.py)."""
