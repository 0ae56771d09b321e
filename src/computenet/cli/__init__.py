"""`cnet`: Typer + Rich command line, a thin layer over the SDK (and server/agent entry points)."""
