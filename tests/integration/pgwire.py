"""A tiny PostgreSQL v3 wire-protocol client for tests that need raw bytes.

It logs in (SCRAM-SHA-256, MD5 or cleartext, SCRAM done with hashlib/hmac),
runs simple and extended-protocol messages, and lets a test send arbitrary,
even malformed, bytes and read whatever comes back.
"""
import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTOCOL_V3 = 196608
SSL_REQUEST_CODE = 80877103
CANCEL_REQUEST_CODE = 80877102


class PgError(Exception):
    """An ErrorResponse; .fields maps field codes ('C', 'M', 'S', ...) to text."""

    def __init__(self, fields):
        self.fields = fields
        self.sqlstate = fields.get("C")
        super().__init__(f"{fields.get('S', 'ERROR')} {self.sqlstate}: {fields.get('M')}")


class Closed(Exception):
    """The peer closed the connection."""


def parse_fields(payload):
    """ErrorResponse / NoticeResponse body -> {code: text}."""
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def msg(mtype, payload=b""):
    """Frame one frontend message: type byte, int32 length (self-inclusive), body."""
    return mtype + struct.pack("!i", len(payload) + 4) + payload


def cstr(s):
    return (s.encode() if isinstance(s, str) else s) + b"\0"


def startup_packet(user, database, **params):
    body = struct.pack("!i", PROTOCOL_V3)
    for k, v in dict(user=user, database=database, **params).items():
        body += cstr(k) + cstr(v)
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


# Extended-protocol message builders.
def parse(name, sql, param_oids=()):
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack("!h", len(param_oids))
               + b"".join(struct.pack("!i", o) for o in param_oids))


def bind(stmt, params=(), portal=""):
    body = cstr(portal) + cstr(stmt) + struct.pack("!hh", 0, len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            b = str(p).encode()
            body += struct.pack("!i", len(b)) + b
    return msg(b"B", body + struct.pack("!h", 0))


def describe(kind, name=""):
    return msg(b"D", kind + cstr(name))


def execute(portal="", max_rows=0):
    return msg(b"E", cstr(portal) + struct.pack("!i", max_rows))


def close(kind, name):
    return msg(b"C", kind + cstr(name))


def sync():
    return msg(b"S")


def flush():
    return msg(b"H")


def terminate():
    return msg(b"X")


def query(sql):
    return msg(b"Q", cstr(sql))


class Result:
    """What one Sync / simple Query produced."""

    def __init__(self):
        self.rows = []          # list of tuples of str/None (text format)
        self.tags = []          # CommandComplete tags
        self.errors = []        # list of PgError
        self.notices = []
        self.types = []         # message types in arrival order
        self.status = None      # ReadyForQuery status byte

    @property
    def error(self):
        return self.errors[0] if self.errors else None


class PgWire:
    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.params = {}
        self.backend_key = None

    # -- raw I/O -------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed()
            self.buf += chunk

    def read_byte(self):
        self._fill(1)
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def read_msg(self):
        """Next backend message as (type, payload); raises Closed on EOF."""
        self._fill(5)
        mtype = self.buf[:1]
        (length,) = struct.unpack("!i", self.buf[1:5])
        if length < 4:
            raise ValueError(f"bad backend message length {length}")
        self._fill(1 + length)
        payload = self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        return mtype, payload

    def read_until_error_or_close(self, timeout=5.0):
        """Read until an ErrorResponse or EOF. Returns the PgError or None on close.

        Raises TimeoutError if neither arrives in time (the thing tests forbid).
        """
        deadline = time.monotonic() + timeout
        err = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no ErrorResponse and no close")
            self.sock.settimeout(left)
            try:
                mtype, payload = self.read_msg()
            except (Closed, ConnectionResetError, BrokenPipeError):
                return err
            except socket.timeout:
                raise TimeoutError("no ErrorResponse and no close") from None
            if mtype == b"E":
                err = PgError(parse_fields(payload))
                return err

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- startup and authentication ---------------------------------------
    def ssl_request(self):
        self.send(struct.pack("!ii", 8, SSL_REQUEST_CODE))
        return self.read_byte()

    def login(self, user, password, database, **params):
        self.send(startup_packet(user, database, **params))
        scram = None
        while True:
            mtype, payload = self.read_msg()
            if mtype == b"E":
                raise PgError(parse_fields(payload))
            if mtype == b"R":
                (code,) = struct.unpack("!i", payload[:4])
                if code == 0:
                    continue
                if code == 3:
                    self.send(msg(b"p", cstr(password)))
                elif code == 5:
                    salt = payload[4:8]
                    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    self.send(msg(b"p", cstr("md5" + outer)))
                elif code == 10:
                    mechs = payload[4:].split(b"\0")
                    if b"SCRAM-SHA-256" not in mechs:
                        raise RuntimeError(f"no supported SASL mechanism in {mechs}")
                    scram = ScramClient(password)
                    first = scram.client_first()
                    self.send(msg(b"p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first))
                elif code == 11:
                    self.send(msg(b"p", scram.client_final(payload[4:])))
                elif code == 12:
                    scram.verify_server_final(payload[4:])
                else:
                    raise RuntimeError(f"unsupported auth request {code}")
            elif mtype == b"S":
                k, v, _ = payload.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif mtype == b"K":
                self.backend_key = struct.unpack("!ii", payload)
            elif mtype == b"Z":
                return self
            elif mtype == b"N":
                continue
            else:
                raise RuntimeError(f"unexpected message {mtype!r} during startup")

    # -- queries ------------------------------------------------------------
    def read_result(self):
        """Collect messages up to and including ReadyForQuery."""
        res = Result()
        while True:
            mtype, payload = self.read_msg()
            res.types.append(mtype)
            if mtype == b"D":
                res.rows.append(decode_row(payload))
            elif mtype == b"C":
                res.tags.append(payload.rstrip(b"\0").decode())
            elif mtype == b"E":
                res.errors.append(PgError(parse_fields(payload)))
            elif mtype == b"N":
                res.notices.append(parse_fields(payload))
            elif mtype == b"S":
                k, v, _ = payload.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif mtype == b"Z":
                res.status = payload
                return res

    def simple(self, sql):
        self.send(query(sql))
        return self.read_result()

    def extended(self, *messages):
        """Send the messages followed by Sync and collect the result."""
        self.send(b"".join(messages) + sync())
        return self.read_result()


def decode_row(payload):
    (n,) = struct.unpack("!h", payload[:2])
    pos, row = 2, []
    for _ in range(n):
        (ln,) = struct.unpack("!i", payload[pos:pos + 4])
        pos += 4
        if ln < 0:
            row.append(None)
        else:
            row.append(payload[pos:pos + ln].decode())
            pos += ln
    return tuple(row)


class ScramClient:
    """SCRAM-SHA-256 client side (RFC 5802/7677), no channel binding."""

    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"

    def client_first(self):
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first):
        server_first = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        rnonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not rnonce.startswith(self.nonce):
            raise RuntimeError("server nonce does not extend client nonce")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={rnonce}"
        self.auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, self.auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, server_final):
        attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
        expected = hmac.new(self.server_key, self.auth_message, hashlib.sha256).digest()
        if base64.b64decode(attrs["v"]) != expected:
            raise RuntimeError("server SCRAM signature mismatch")


def scram_secret(password, salt=None, iterations=4096):
    """The SCRAM-SHA-256$iter:salt$StoredKey:ServerKey form Postgres stores."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def connect(port, user="pgvalet", password="pgvalet-pass", database="appdb",
            host="127.0.0.1", timeout=10.0, **params):
    return PgWire(host, port, timeout).login(user, password, database, **params)
