"""The build-loop side: the post-build-hook client and the control client."""
