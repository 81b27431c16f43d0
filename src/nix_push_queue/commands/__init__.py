"""One module per subcommand. Each exposes `register(parser)` and `run(args, env) -> int`.

These modules are the CLI layer: they turn argv and environment into calls of the library
modules and may import heavy dependencies only inside `run`.
"""
