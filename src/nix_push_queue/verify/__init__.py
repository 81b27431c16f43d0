"""`verify`: the manual's test procedure, and its embedded default."""
