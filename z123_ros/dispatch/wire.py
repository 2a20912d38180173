"""Messages between the node-side dispatcher proxy and its dispatch child process (one socket pair, two processes).

A message is a tuple pickled with protocol 5; numpy arrays (images, depth, meshes) travel out of band: the pickle
names them and each array's bytes follow as their own frame, written straight from the array and received straight
into a writable buffer (no copy into the pickle and out again).

Unpickling runs code, so this channel only ever connects a process to the child it spawned itself (an anonymous
``socket.socketpair``, never a listening socket or a file path another user could open).
"""

from __future__ import annotations

import contextlib
import pickle
import select
import socket
import struct
import threading
from typing import Any

#: Frame header: pickle length, number of out-of-band buffers, then each buffer's length (little endian).
_HEAD = struct.Struct("<QI")
_LENGTH = struct.Struct("<Q")

#: Socket buffer size asked for: a camera frame's arrays pass in a few system calls instead of hundreds.
_SOCKET_BUFFER = 4 * 1024 * 1024


class Channel:
    """One end of the socket pair. ``send`` may be called from several threads; ``recv`` from one thread only."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):  # the system's limit applies; only slower
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)

    def send(self, message: tuple) -> None:
        """Send one message; raises OSError (broken pipe) when the other process is gone."""
        buffers: list[pickle.PickleBuffer] = []
        head = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
        views = [b.raw() for b in buffers]
        frame = _HEAD.pack(len(head), len(views)) + b"".join(_LENGTH.pack(v.nbytes) for v in views)
        with self._send_lock:
            self._sock.sendall(frame + head)
            for view in views:
                self._sock.sendall(view)

    def recv(self) -> tuple:
        """Block until one message arrives; raises EOFError (or OSError) when the other process is gone."""
        head_len, count = _HEAD.unpack(self._read(_HEAD.size))
        lengths = self._read(count * _LENGTH.size)
        sizes = [_LENGTH.unpack_from(lengths, i * _LENGTH.size)[0] for i in range(count)]
        head = self._read(head_len)
        # bytearray, not bytes: arrays rebuilt on it are writable, as the sender's were.
        buffers = [self._read(size) for size in sizes]
        message: Any = pickle.loads(head, buffers=buffers)
        return message

    def _read(self, size: int) -> bytearray:
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            n = self._sock.recv_into(view[got:])
            if n == 0:
                raise EOFError("the other end of the dispatch channel closed")
            got += n
        return buf

    def poll(self, timeout_s: float) -> bool:
        """True when a message (or end of file) is waiting."""
        readable, _, _ = select.select([self._sock], [], [], timeout_s)
        return bool(readable)

    def close(self) -> None:
        self._sock.close()
