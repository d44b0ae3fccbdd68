"""One module per training stage; each exposes `CONFIG` (its config dataclass) and
`train(config, out_dir, preset, resume, quiet) -> dict` (a summary of the run)."""
