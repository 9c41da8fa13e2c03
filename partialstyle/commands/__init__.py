"""The `partialstyle` command line: one module per group of subcommands, `cli.main` runs them."""
