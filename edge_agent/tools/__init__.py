"""Client and maintenance tools of the CLI: bench, discover, deflate measurement, model tools."""
