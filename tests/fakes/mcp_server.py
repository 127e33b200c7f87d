"""A small MCP server (the `mcp` SDK's MCPServer over Streamable HTTP), run in the test's
process on 127.0.0.1: an order lookup anyone may run, a refund that needs approval, and a
tool that always fails."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import uvicorn
from mcp.server.mcpserver import MCPServer

ORDERS = {"A-17": "shipped on 3 May, tracking 1Z999", "B-2": "waiting for stock"}


@dataclass
class FakeMcpServer:
    token: str = "mcp-secret"
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    slow_s: float = 3.0
    seen_auth: list[str] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    def _app(self) -> MCPServer:
        mcp = MCPServer("orders")

        @mcp.tool(description="Look up the status of an order by its id.")
        def lookup_order(order_id: str) -> str:
            self.calls.append(("lookup_order", {"order_id": order_id}))
            return f"Order {order_id}: {ORDERS.get(order_id, 'unknown order')}"

        @mcp.tool(description="Refund an order by its id.")
        def refund_order(order_id: str) -> str:
            self.calls.append(("refund_order", {"order_id": order_id}))
            return f"Order {order_id} refunded"

        @mcp.tool(description="An order lookup on a slow backend.")
        async def slow_lookup(order_id: str) -> str:
            self.calls.append(("slow_lookup", {"order_id": order_id}))
            await asyncio.sleep(self.slow_s)
            return f"Order {order_id}: found, slowly"

        @mcp.tool(description="A tool whose backend is broken.")
        def broken_tool(query: str) -> str:
            self.calls.append(("broken_tool", {"query": query}))
            raise RuntimeError("the database is on fire")

        return mcp

    async def start(self) -> None:
        app = self._app().streamable_http_app(stateless_http=True, json_response=True)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/mcp"
        token, seen = self.token, self.seen_auth

        async def checked(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] == "http":
                headers = dict(scope.get("headers") or [])
                auth = headers.get(b"authorization", b"").decode()
                seen.append(auth)
                if auth != f"Bearer {token}":
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b"unauthorized"})
                    return
            await app(scope, receive, send)

        config = uvicorn.Config(
            checked, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        for _ in range(1000):  # until uvicorn says it listens (within 10 s)
            if self._server.started:
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("the MCP server did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
