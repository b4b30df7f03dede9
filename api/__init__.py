"""The HTTP API and the command line: thin layers over `rag`."""
