"""The container in lab 07's pods: a TCP server that says who it is and whom it saw.

Like the `traefik/whoami` image people deploy to debug Services: each connection gets one
line back, `<pod name> saw <peer ip>:<peer port> tag=<tag>`, where `<tag>` is the first line
the client sent. The peer address is what the pod's kernel reports for the connection,
i.e. the source address the pod saw *after* every NAT on the way. A unique tag per probe
ties a reply (and a captured packet carrying the same bytes) to the probe that sent it.

    python -m course.whoami NAME [PORT]            # the server (asyncio: thousands at once)

`tagged_connections(...)` is the client side used by checks and the benchmark: many new
connections at once, each with its own tag, and the line each one got back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import selectors
import socket
import sys
import time
from dataclasses import dataclass

PORT = 8080


# --- the server (runs inside a pod) --------------------------------------------------------
async def _serve(name: str, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            tag = (await asyncio.wait_for(reader.readline(), 5)).decode(errors="replace").strip()
            writer.write(f"{name} saw {peer[0]}:{peer[1]} tag={tag}\n".encode())
            await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port, backlog=4096, reuse_address=True)
    print(f"{name} listening on :{port}", flush=True)
    async with server:
        await server.serve_forever()


def serve(name: str, port: int = PORT) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(name, port))


# --- the client (runs inside the client's namespace) ---------------------------------------
@dataclass(frozen=True)
class Answer:
    """What one tagged connection got back: the pod and the source address it saw."""

    tag: str
    sport: int
    pod: str | None = None  # None: no answer (refused, reset, timed out)
    seen: str | None = None  # the peer ip the pod reported
    error: str = ""


def parse_reply(line: str) -> tuple[str, str, str] | None:
    """`b saw 192.168.1.11:40211 tag=x` -> ("b", "192.168.1.11", "x")."""
    words = line.split()
    if len(words) != 4 or words[1] != "saw" or not words[3].startswith("tag="):
        return None
    return words[0], words[2].rsplit(":", 1)[0], words[3][4:]


def tagged_connections(
    dst: str | list[str],
    port: int,
    tags: list[str],
    timeout: float = 2.0,
    sport_base: int = 40000,
    batch: int = 200,
) -> list[Answer]:
    """One new TCP connection per tag, from source port `sport_base + i`; every answer.

    `dst` may be a list: connection i then goes to `dst[i % len(dst)]`.

    Non-blocking sockets, `batch` connections in flight at a time (the kernel's backlog
    stays small on a busy machine); each sends its tag and reads one line. Closing with
    SO_LINGER 0 sends RST: no TIME_WAIT, so source ports can be reused by the next run.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < batch + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, batch + 64), hard))
    answers: list[Answer] = []
    for start in range(0, len(tags), batch):
        chunk = list(enumerate(tags[start : start + batch], start))
        answers += _run_batch(dst, port, chunk, sport_base, timeout)
    return answers


@dataclass
class _Conn:
    tag: str
    sport: int
    sock: socket.socket
    buf: bytes = b""
    sent: bool = False


def _run_batch(
    dst: str | list[str], port: int, chunk: list[tuple[int, str]], sport_base: int, timeout: float
) -> list[Answer]:
    sel = selectors.DefaultSelector()
    done: list[Answer] = []
    for i, tag in chunk:
        s = socket.socket()
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sport = sport_base + i
        try:
            s.bind(("0.0.0.0", sport))
            s.connect_ex((dst if isinstance(dst, str) else dst[i % len(dst)], port))
        except OSError as exc:
            s.close()
            done.append(Answer(tag, sport, error=exc.strerror or str(exc)))
            continue
        sel.register(s, selectors.EVENT_WRITE, _Conn(tag, sport, s))
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            answer = _step(sel, key.data)
            if answer is not None:
                done.append(answer)
    for key in list(sel.get_map().values()):
        conn: _Conn = key.data
        sel.unregister(conn.sock)
        conn.sock.close()
        done.append(Answer(conn.tag, conn.sport, error="no answer in time"))
    sel.close()
    return done


def _step(sel: selectors.BaseSelector, conn: _Conn) -> Answer | None:
    """Advance one connection: send the tag once connected, then read until newline."""
    s = conn.sock
    try:
        if not conn.sent:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            s.send(f"{conn.tag}\n".encode())
            conn.sent = True
            sel.modify(s, selectors.EVENT_READ, conn)
            return None
        data = s.recv(512)
        conn.buf += data
        if data and b"\n" not in conn.buf:
            return None
    except OSError as exc:
        sel.unregister(s)
        s.close()
        return Answer(conn.tag, conn.sport, error=exc.strerror or str(exc))
    sel.unregister(s)
    s.close()
    parsed = parse_reply(conn.buf.decode(errors="replace").strip())
    if parsed is None:
        return Answer(conn.tag, conn.sport, error=f"unexpected reply {conn.buf[:60]!r}")
    pod, seen, echoed = parsed
    if echoed != conn.tag:  # the server read another connection's bytes: never expected
        return Answer(conn.tag, conn.sport, error=f"{pod} echoed tag {echoed!r}")
    return Answer(conn.tag, conn.sport, pod=pod, seen=seen)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else PORT)
