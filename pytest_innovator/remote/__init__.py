"""Workspaces on another machine or in a container: the session server (FastAPI), its HTTP
client, and the docker backend that runs the server inside a container."""
