"""The snapshot store of an item's run (workspace, sessions' logs, ledger, agent state), and
resume and branching from it."""
