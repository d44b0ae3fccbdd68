"""`rollcast` subcommands (serve, api, worker): each module defines HELP, add_arguments(parser)
and run(args) -> exit code; `server.cli` imports a module only when its command is used."""
