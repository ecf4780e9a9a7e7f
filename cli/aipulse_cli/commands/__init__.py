"""One module per ``aipulse`` subcommand, each with ``add_arguments(parser)`` and ``run(args) -> int``.

Registered in :data:`aipulse_cli.main.COMMANDS`; imported only when its command is chosen.
"""
