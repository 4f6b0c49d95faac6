"""The dotcloud HTTP router: a reverse proxy routing by Host to app instances."""
