"""The daemon side: queue store, workers, uploader, server, metrics."""
