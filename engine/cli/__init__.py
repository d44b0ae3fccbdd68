"""Engine commands of the `rollcast` CLI (each module: HELP, add_arguments(parser), run(args))."""
