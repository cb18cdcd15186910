"""streams: a raw client connection, plaintext or TLS, for the byte-level tests.

TLS runs over memory BIOs (ssl.SSLObject), so the test decides exactly which bytes go on
the wire and when: a ClientHello can be dribbled one byte at a time, close_notify can be
sent without a TCP FIN, and a large stream can be written and read at the same time from
one thread. Python's ssl module is OpenSSL, a different TLS stack from the sidecar's.
"""

import hashlib
import selectors
import socket
import ssl
import time


class Stream:
    """One client connection to 127.0.0.1:port; TLS (verified against `ca`) when ca is set."""

    def __init__(self, port, ca=None, server_hostname="localhost", timeout=20):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls = None
        self.close_notify_received = False
        self.tcp_eof = False
        if ca is not None:
            context = ssl.create_default_context(cafile=str(ca))
            self.incoming = ssl.MemoryBIO()
            self.outgoing = ssl.MemoryBIO()
            self.tls = context.wrap_bio(self.incoming, self.outgoing,
                                        server_hostname=server_hostname)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- blocking primitives -------------------------------------------------------------

    def _send_raw(self, data, dribble=False):
        if not dribble:
            self.sock.sendall(data)
            return
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(0.002)

    def _flush(self, dribble=False):
        pending = self.outgoing.read()
        if pending:
            self._send_raw(pending, dribble)

    def _fill(self):
        """Reads ciphertext into the TLS engine; False on TCP EOF."""
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            self.tcp_eof = True
            return False
        self.incoming.write(chunk)
        return True

    def handshake(self, dribble=False):
        """Completes the TLS handshake; with dribble, the ClientHello leaves one byte at a time."""
        first_flight = True
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush(dribble and first_flight)
                first_flight = False
                if not self._fill():
                    raise ConnectionError("connection closed during the TLS handshake")
        self._flush()

    def send(self, data, dribble=False):
        if self.tls is None:
            self._send_raw(data, dribble)
            return
        self.tls.write(data)
        self._flush(dribble)

    def recv(self, n=1 << 16):
        """Up to n bytes; b"" at the end of the stream (close_notify or TCP EOF)."""
        if self.tls is None:
            data = self.sock.recv(n)
            self.tcp_eof = not data
            return data
        while True:
            try:
                data = self.tls.read(n)
                if not data:
                    # Python answers a close_notify with b"" instead of SSLZeroReturnError
                    # while ours is not sent yet (_ssl.c: SSL_RECEIVED_SHUTDOWN alone).
                    self.close_notify_received = True
                return data
            except ssl.SSLWantReadError:
                if not self._fill():
                    return b""
            except ssl.SSLZeroReturnError:
                self.close_notify_received = True
                return b""

    def recv_exact(self, n):
        data = bytearray()
        while len(data) < n:
            chunk = self.recv(n - len(data))
            if not chunk:
                raise ConnectionError(f"end of stream after {len(data)} of {n} bytes")
            data += chunk
        return bytes(data)

    def recv_until_eof(self):
        data = bytearray()
        while True:
            chunk = self.recv()
            if not chunk:
                return bytes(data)
            data += chunk

    def _close_notify(self):
        # unwrap() writes close_notify into the outgoing BIO, then wants to read the peer's.
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass

    def shutdown_write(self):
        """Half-closes: close_notify alone for TLS (no TCP FIN), a FIN for plaintext."""
        if self.tls is None:
            self.sock.shutdown(socket.SHUT_WR)
            return
        self._close_notify()
        self._flush()

    # --- full duplex ---------------------------------------------------------------------

    def pump(self, data, half_close=True, chunk=1 << 18):
        """Writes `data` while reading what comes back, from one thread. With half_close, the
        write side is closed after the last byte and reading goes on to the end of the
        stream; otherwise it stops after len(data) bytes. Returns (count, sha256 hexdigest)
        of what was read."""
        view = memoryview(data)
        sent = 0
        out = memoryview(b"")
        write_closed = False
        received = 0
        digest = hashlib.sha256()
        eof = False
        deadline = time.monotonic() + max(60, self.timeout)
        self.sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        try:
            while not eof and (half_close or received < len(data)):
                if not out:
                    if sent < len(data):
                        piece = view[sent:sent + chunk]
                        sent += len(piece)
                        if self.tls is None:
                            out = piece
                        else:
                            self.tls.write(piece)
                            out = memoryview(self.outgoing.read())
                    elif half_close and not write_closed:
                        write_closed = True
                        if self.tls is None:
                            self.sock.shutdown(socket.SHUT_WR)
                        else:
                            self._close_notify()
                            out = memoryview(self.outgoing.read())
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
                selector.modify(self.sock, events)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"pump: sent {sent} of {len(data)} bytes, received "
                                       f"{received}, write closed: {write_closed}")
                for _, ready in selector.select(timeout=remaining):
                    if ready & selectors.EVENT_WRITE and out:
                        try:
                            n = self.sock.send(out)
                            out = out[n:]
                        except BlockingIOError:
                            pass
                    if ready & selectors.EVENT_READ:
                        try:
                            incoming = self.sock.recv(1 << 20)
                        except BlockingIOError:
                            continue
                        if not incoming:
                            self.tcp_eof = True
                            eof = True
                            continue
                        if self.tls is None:
                            digest.update(incoming)
                            received += len(incoming)
                            continue
                        self.incoming.write(incoming)
                        while True:
                            try:
                                plain = self.tls.read(1 << 20)
                            except ssl.SSLWantReadError:
                                break
                            except ssl.SSLZeroReturnError:
                                self.close_notify_received = True
                                eof = True
                                break
                            digest.update(plain)
                            received += len(plain)
        finally:
            selector.close()
            self.sock.setblocking(True)
            self.sock.settimeout(self.timeout)
        return received, digest.hexdigest()
