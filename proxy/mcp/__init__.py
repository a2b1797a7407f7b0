"""memproxy as an MCP server: memory tools over the management API (docs/mcp.md)."""
