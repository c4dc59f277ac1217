"""One module per CLI command group; `scantrace.cli` imports them lazily."""
