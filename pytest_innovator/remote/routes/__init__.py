"""The session server's routes, one module per resource."""

from . import files, leases, protected, sessions, tasks, workspaces

ROUTERS = (workspaces.router, leases.router, tasks.router, files.router, protected.router, sessions.router)
