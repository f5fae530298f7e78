"""A TCP proxy the tests can cut, partition and restore, to make the broker vanish for one service only."""

from __future__ import annotations

import asyncio
import contextlib


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._passing = asyncio.Event()
        self._passing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop every open one, like a broker that died."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def partition(self) -> None:
        """Stop carrying bytes either way while every socket stays open, as a network partition does:
        neither side is told, so only heartbeats and timeouts can notice. New connections are accepted
        and hang the same way. What was sent meanwhile waits in the socket buffers, as TCP would keep
        retransmitting it."""
        self._passing.clear()

    def heal(self) -> None:
        self._passing.set()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        self.heal()
        await self.cut()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await self._passing.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._links |= {client_writer, upstream_writer}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while True:
                    await self._passing.wait()
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    await self._passing.wait()  # a chunk read as the partition began waits for its end
                    writer.write(chunk)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
        self._links -= {client_writer, upstream_writer}
