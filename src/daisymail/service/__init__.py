"""The admin operations and their validation, shared by the CLI and the HTTP API."""
