"""Tools a turn can use: MCP servers (`config.py`, `mcp_client.py`) and their progress."""
