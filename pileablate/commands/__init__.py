"""One module per CLI command: Typer-annotated functions that parse options and call the package."""
