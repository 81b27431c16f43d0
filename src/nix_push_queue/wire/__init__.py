"""What crosses the socket or the disk between hook and daemon: protocol, framing, spool."""
