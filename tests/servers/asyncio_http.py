"""Minimal HTTP/1.1 over asyncio streams, shared by the asyncio test services.

`read_message(reader)` reads one message (head and Content-Length body);
`serve(port, answer, setup)` runs a keep-alive server on 127.0.0.1:`port`
in which `await answer(path)` gives each GET's response body, after
`await setup()` if given, and prints "ready" once it listens.
"""
import asyncio


async def read_message(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return head, body


def serve(port, answer, setup=None):
    async def handle(reader, writer):
        try:
            while True:
                head, _ = await read_message(reader)
                body = await answer(head.split(b" ", 2)[1].decode())
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        if setup is not None:
            await setup()
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
