"""The session server's routes, one module per resource."""

from . import files, leases, protected, sessions, workspaces

ROUTERS = (workspaces.router, leases.router, files.router, protected.router, sessions.router)
