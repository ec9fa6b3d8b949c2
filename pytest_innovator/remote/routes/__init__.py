"""The session server's routes, one module per resource."""

from . import files, protected, sessions, workspaces

ROUTERS = (workspaces.router, files.router, protected.router, sessions.router)
