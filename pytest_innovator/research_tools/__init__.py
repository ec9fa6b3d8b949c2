"""Optional tools a task may offer its agent beyond files, sessions and the system tools: memory,
web search and browsing, literature search, document parsing. Each module exports
`TOOLS: list[Tool]`; `tools.action_space` adds a group when the task's `tools` names it."""
