"""Small threaded HTTP/1.1 server toolkit for the proxy integration tests (loopback only).

Deliberately strict and simple: it parses what a well-behaved proxy sends (CRLF lines,
Content-Length or chunked bodies) and streams bodies in pieces so memory stays small."""

import socket
import sys
import threading


class Conn:
    """A socket with a read buffer."""

    def __init__(self, sock, cid):
        self.sock = sock
        self.cid = cid
        self.buf = b""
        self.requests = 0

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_until(self, sep, limit=1 << 20):
        while sep not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self.fill():
                return None
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_some(self, n):
        if not self.buf and not self.fill():
            return b""
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_exact(self, n):
        parts = []
        while n > 0:
            p = self.read_some(min(n, 65536))
            if not p:
                raise EOFError("short body")
            parts.append(p)
            n -= len(p)
        return b"".join(parts)

    def send(self, data):
        self.sock.sendall(data)


class Request:
    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of [name, value] as received

    def get(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def path(self):
        return self.target.split("?", 1)[0]

    def query(self):
        out = {}
        if "?" in self.target:
            for part in self.target.split("?", 1)[1].split("&"):
                if "=" in part:
                    k, v = part.split("=", 1)
                    out[k] = v
        return out

    def keep_alive(self):
        conn = (self.get("Connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


def read_request(conn):
    head = conn.read_until(b"\r\n\r\n")
    if head is None:
        return None
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers.append([k, v.strip()])
    return Request(method, target, version, headers)


def body_chunks(conn, req):
    """Yields the request body in pieces (Content-Length or chunked)."""
    te = (req.get("Transfer-Encoding") or "").lower()
    if te == "chunked":
        while True:
            line = conn.read_until(b"\r\n")
            if line is None:
                raise EOFError("eof in chunk size")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    t = conn.read_until(b"\r\n")
                    if t is None or t == b"\r\n":
                        return
            left = size
            while left:
                p = conn.read_some(min(left, 65536))
                if not p:
                    raise EOFError("eof in chunk")
                left -= len(p)
                yield p
            if conn.read_exact(2) != b"\r\n":
                raise ValueError("bad chunk end")
    else:
        left = int(req.get("Content-Length") or "0")
        while left:
            p = conn.read_some(min(left, 65536))
            if not p:
                raise EOFError("eof in body")
            left -= len(p)
            yield p


class Server:
    """Accept loop on 127.0.0.1:port, one thread per connection running handler(server, conn)."""

    def __init__(self, port, handler):
        self.handler = handler
        self.lock = threading.Lock()
        self.conns = 0
        self.requests = 0
        self.log = []
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(512)

    def count_request(self, conn, req):
        with self.lock:
            self.requests += 1
            conn.requests += 1
        print("conn=%d %s %s" % (conn.cid, req.method, req.target), flush=True)

    def run(self):
        while True:
            s, _ = self.ls.accept()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns += 1
                cid = self.conns
            t = threading.Thread(target=self._conn, args=(Conn(s, cid),), daemon=True)
            t.start()

    def _conn(self, conn):
        try:
            self.handler(self, conn)
        except (OSError, EOFError, ValueError) as e:
            print("conn=%d ended: %s" % (conn.cid, e), flush=True)
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass


def port_arg():
    if len(sys.argv) < 2:
        sys.exit("usage: %s PORT" % sys.argv[0])
    return int(sys.argv[1])


def response(status, body=b"", ctype="application/json", extra=()):
    head = "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (status, ctype, len(body))
    for k, v in extra:
        head += "%s: %s\r\n" % (k, v)
    return head.encode() + b"\r\n" + body
