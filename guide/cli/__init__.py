"""The `guide` command line (typer); imported only by the console script, never by `import guide`."""
