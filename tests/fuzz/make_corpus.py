#!/usr/bin/python3
"""Write the seed corpora under tests/fuzz/corpus/<target>/.

Run once from the repository root (/usr/bin/python3 tests/fuzz/make_corpus.py);
the files it writes are committed.  Every seed is a real input: protocol
byte streams as psql/libpq send them, SQL that clients send, SCRAM
exchanges with a correct proof for the fixed secret in fuzz_scram.c,
URLs as found in configuration, and logical replication messages (some
captured from a real walsender).
"""
import base64
import hashlib
import hmac
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- protocol ---------------------------------------------------------------

def msg(t, body=b""):
    return t.encode() + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def startup(**params):
    body = struct.pack("!I", 196608)
    for k, v in params.items():
        body += cstr(k) + cstr(v)
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


SSL_REQUEST = struct.pack("!II", 8, 80877103)
CANCEL = struct.pack("!IIII", 16, 80877102, 4242, 0x1234ABCD)


def parse(name, query, oids=()):
    return msg("P", cstr(name) + cstr(query) + struct.pack("!h", len(oids))
               + b"".join(struct.pack("!I", o) for o in oids))


def bind(portal, stmt, params, fmts=(), rfmts=()):
    body = cstr(portal) + cstr(stmt) + struct.pack("!h", len(fmts))
    body += b"".join(struct.pack("!h", f) for f in fmts)
    body += struct.pack("!h", len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            body += struct.pack("!i", len(p)) + p
    body += struct.pack("!h", len(rfmts))
    body += b"".join(struct.pack("!h", f) for f in rfmts)
    return msg("B", body)


def error(sev, code, text):
    return msg("E", b"S" + cstr(sev) + b"V" + cstr(sev) + b"C" + cstr(code)
               + b"M" + cstr(text) + b"\0")


def protocol():
    t = "fuzz_msg"
    write(t, "startup", startup(user="alice", database="app",
                                application_name="psql",
                                client_encoding="UTF8"))
    write(t, "ssl_then_startup", SSL_REQUEST + startup(user="bob"))
    write(t, "cancel", CANCEL)
    write(t, "startup_query_terminate",
          startup(user="alice", database="app") + msg("Q", cstr("SELECT 1"))
          + msg("X"))
    write(t, "query", msg("Q", cstr("SELECT 1")))
    write(t, "query_multi", msg("Q", cstr("SET search_path TO app; SELECT 2;")))
    write(t, "extended",
          parse("s1", "SELECT $1::int + $2", (23, 23))
          + bind("", "s1", [b"1", None], (0,), (1,))
          + msg("D", b"P" + cstr(""))
          + msg("E", cstr("") + struct.pack("!i", 0))
          + msg("S"))
    write(t, "extended_unnamed",
          parse("", "SELECT now()") + bind("", "", [])
          + msg("E", cstr("") + struct.pack("!i", 100))
          + msg("C", b"S" + cstr("s1")) + msg("H") + msg("S"))
    write(t, "backend_login",
          msg("R", struct.pack("!i", 10) + cstr("SCRAM-SHA-256") + b"\0")
          + msg("R", struct.pack("!i", 0))
          + msg("S", cstr("server_version") + cstr("15.6"))
          + msg("S", cstr("client_encoding") + cstr("UTF8"))
          + msg("K", struct.pack("!iI", 4242, 0x1234ABCD))
          + msg("Z", b"I"))
    rowdesc = struct.pack("!h", 1) + cstr("?column?") + struct.pack(
        "!IhIhih", 0, 0, 23, 4, -1, 0)
    write(t, "backend_result",
          msg("T", rowdesc)
          + msg("D", struct.pack("!hi", 1, 1) + b"1")
          + msg("D", struct.pack("!hi", 1, -1))
          + msg("C", cstr("SELECT 2")) + msg("Z", b"I"))
    write(t, "backend_error",
          error("ERROR", "42P01", 'relation "nope" does not exist')
          + msg("N", b"S" + cstr("WARNING") + b"C" + cstr("01000")
                + b"M" + cstr("w") + b"\0")
          + msg("Z", b"E"))
    write(t, "copy_in",
          msg("Q", cstr("COPY t FROM STDIN")) + msg("d", b"1\tfoo\n")
          + msg("c"))
    # Damaged streams: a length word under 4, and a truncated body.
    write(t, "bad_length", msg("Q", cstr("SELECT 1"))[:1] + b"\0\0\0\3")
    write(t, "truncated", msg("Q", cstr("SELECT 1"))[:9])


# ---- SQL --------------------------------------------------------------------

SQL = {
    "select": "SELECT 1",
    "set": "SET search_path TO app, public",
    "set_session": "SET SESSION work_mem TO '64MB'",
    "set_local": "SET LOCAL statement_timeout = 0",
    "set_time_zone": "SET TIME ZONE 'UTC'",
    "set_names": "SET NAMES 'UTF8'",
    "set_default": "set search_path to default",
    "reset": "RESET ALL; RESET work_mem",
    "discard": "DISCARD ALL",
    "deallocate": "DEALLOCATE PREPARE s1; DEALLOCATE ALL; DEALLOCATE s2",
    "listen": "LISTEN jobs; NOTIFY jobs, 'x'",
    "temp": "CREATE TEMP TABLE t (a int); CREATE TABLE u (b text)",
    "cursor": "BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT 1; COMMIT",
    "advisory": "SELECT pg_advisory_lock(1), pg_try_advisory_lock(2)",
    "set_config": "select set_config('app.user', 'x', false)",
    "quotes": "SELECT 'a;b', E'\\';', \"ident;\"; SELECT 2",
    "dollar": "DO $$ BEGIN PERFORM 1; END $$; SELECT $tag$ ;$$; $tag$, $1",
    "comments": "SELECT 1 -- x; y\n; /* a /* b; */ c; */ SELECT 2",
    "empty": " ; ;; \n",
    "unterminated": "SELECT 'abc; SELECT $q$ x",
    "paren": "(SELECT pg_advisory_lock(1))",
}


def sql():
    for name, text in SQL.items():
        write("fuzz_sqlclass", name, text)


# ---- SCRAM ------------------------------------------------------------------

PASSWORD = b"pencil"                       # fuzz_scram.c FUZZ_PASSWORD
SALT = bytes([0x46, 0x55, 0x5A, 0x5A, 0x73, 0x61, 0x6C, 0x74,
              1, 2, 3, 4, 5, 6, 7, 8])     # fuzz_scram.c fuzz_salt
ITER = 4096
SNONCE = "fuzzServerNonce0123"             # fuzz_scram.c FUZZ_SNONCE


def b64(b):
    return base64.b64encode(b).decode()


def hm(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def scram_input(first, final):
    first = first.encode() if isinstance(first, str) else first
    final = final.encode() if isinstance(final, str) else final
    assert len(first) < 256
    return bytes([len(first)]) + first + final


def exchange(cnonce, gs2="n,,", ext="", password=PASSWORD, final_ext=""):
    """A full exchange: the first message and a final one with a proof."""
    bare = "n=," + "r=" + cnonce + ext
    first = gs2 + bare
    server_first = "r=%s%s,s=%s,i=%d" % (cnonce, SNONCE, b64(SALT), ITER)
    cbind = b64(gs2.encode())
    without_proof = "c=%s,r=%s%s%s" % (cbind, cnonce, SNONCE, final_ext)
    salted = hashlib.pbkdf2_hmac("sha256", password, SALT, ITER)
    client_key = hm(salted, b"Client Key")
    stored = hashlib.sha256(client_key).digest()
    auth = ",".join([bare, server_first, without_proof]).encode()
    sig = hm(stored, auth)
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    return scram_input(first, without_proof + ",p=" + b64(proof))


def scram():
    t = "fuzz_scram"
    write(t, "ok", exchange("rOprNGfwEbeRWgbNEkqO"))
    write(t, "ok_y_flag", exchange("abc", gs2="y,,"))
    write(t, "ok_extensions", exchange("xyz", ext=",x=1", final_ext=",q=v"))
    write(t, "bad_password", exchange("n0nce", password=b"wrong"))
    write(t, "cbind_p", scram_input("p=tls-server-end-point,,n=,r=abc",
                                    "c=biws,r=abc,p=AAAA"))
    write(t, "authzid", scram_input("n,a=admin,n=,r=abc", ""))
    write(t, "ext_m", scram_input("n,,m=ext,n=,r=abc", ""))
    write(t, "bad_nonce", scram_input("n,,n=,r=a,b", ""))
    write(t, "short_proof", scram_input(
        "n,,n=,r=abc", "c=biws,r=abc" + SNONCE + ",p=AAAA"))
    salted = hashlib.pbkdf2_hmac("sha256", PASSWORD, SALT, ITER)
    stored = hashlib.sha256(hm(salted, b"Client Key")).digest()
    server = hm(salted, b"Server Key")
    # A pg_authid secret: read by scram_secret_parse over the whole input.
    write(t, "secret", "SCRAM-SHA-256$%d:%s$%s:%s" % (
        ITER, b64(SALT), b64(stored), b64(server)))


# ---- URLs -------------------------------------------------------------------

URLS = {
    "minimal": "postgresql://",
    "host": "postgresql://db.example.com/app",
    "full": "postgresql://alice:s3cr%40t@db.example.com:6432/app"
            "?sslmode=verify-full&sslrootcert=/etc/ssl/root.crt"
            "&application_name=pgvalet&connect_timeout=5",
    "ipv6": "postgres://bob@[::1]:5433/db?sslmode=disable",
    "socket": "postgresql://%2Fvar%2Frun%2Fpostgresql/app",
    "query_params": "postgresql:///app?host=/tmp&port=5432&user=u"
                    "&password=p&dbname=d",
    "raw_at": "postgresql://u:p@ss@host/db",
    "bad_port": "postgresql://h:99999/db",
    "multi_host": "postgresql://h1,h2/db",
    "bad_escape": "postgresql://u%zz@h/db",
    "unknown_param": "postgresql://h/db?options=-csearch_path%3Dx",
}


def urls():
    for name, text in URLS.items():
        write("fuzz_pgurl", name, text)


# ---- logical replication (pgoutput, protocol 1) ------------------------------

# Captured from a PostgreSQL 15 walsender (START_REPLICATION ... LOGICAL with
# proto_version '1', publication_names 'p'): whole CopyData payloads for the
# xlog_*/keepalive ones, the pgoutput message alone for the others.  Tables:
# t (id bigint PK, name text, n int, m mood enum), full_t (a int, b text;
# REPLICA IDENTITY FULL), big (id int PK, n int, doc text EXTERNAL).
PGOUTPUT_REAL = {
    "real_xlog_begin":
        "77000000000193b118000000000193b118000303f0ceddc7c642000000000193"
        "b1a0000303f0cedb4ce3000002ec",
    "real_xlog_relation":
        "7700000000000000000000000000000000000303f0ceddcb2652000040337075"
        "626c696300626967006400030169640000000017ffffffff006e0000000017ff"
        "ffffff00646f630000000019ffffffff",
    "real_xlog_insert":
        "77000000000193b118000000000193b118000303f0ceddcd8a49000040334e00"
        "03740000000234337400000001337400000005736d616c6c",
    "real_xlog_commit":
        "77000000000193b1d0000000000193b1d0000303f0ceddce3243000000000001"
        "93b1a0000000000193b1d0000303f0cedb4ce3",
    "real_keepalive":
        "6b000000000193b1d0000303f0ceddceaf00",
    "real_type":
        "59000040197075626c6963006d6f6f6400",
    "real_relation":
        "520000401f7075626c69630074006400040169640000000014ffffffff006e61"
        "6d650000000019ffffffff006e0000000017ffffffff006d0000004019ffffff"
        "ff",
    "real_insert_min":
        "490000401f4e000474000000142d393232333337323033363835343737353830"
        "386e740000000232307400000003736164",
    "real_update_key":
        "550000401f4b00047400000001316e6e6e4e0004740000000132740000000375"
        "6e6f7400000002313074000000026f6b",
    "real_update_full":
        "55000040264f00027400000001317400000001784e0002740000000131740000"
        "000179",
    "real_delete_full":
        "44000040264f0002740000000131740000000179",
    "real_message":
        "4d010000000001932f48706678000000000568656c6c6f",
    "real_truncate":
        "5400000002020000401f00004026",
    "real_origin":
        "4f000000abcdef0123757073747265616d3100",
    "real_update_toast":
        "55000040334e000374000000013774000000013275",
}


def tuple_data(cols):
    """TupleData: None is a NULL, "u" unchanged TOAST, str text, bytes binary."""
    out = struct.pack("!H", len(cols))
    for c in cols:
        if c is None:
            out += b"n"
        elif c == "u":
            out += b"u"
        elif isinstance(c, bytes):
            out += b"b" + struct.pack("!I", len(c)) + c
        else:
            out += b"t" + struct.pack("!I", len(c.encode())) + c.encode()
    return out


def xlogdata(start, end, ts, data):
    return b"w" + struct.pack("!QQq", start, end, ts) + data


def pgoutput():
    t = "fuzz_pgoutput"
    for name, h in PGOUTPUT_REAL.items():
        write(t, name, bytes.fromhex(h))
    ts = 764000000123456
    rel = (b"R" + struct.pack("!I", 16415) + cstr("app") + cstr("users")
           + b"d" + struct.pack("!H", 3)
           + b"\1" + cstr("id") + struct.pack("!Ii", 20, -1)
           + b"\0" + cstr("name") + struct.pack("!Ii", 1043, 68)
           + b"\0" + cstr("doc") + struct.pack("!Ii", 17, -1))
    ins = (b"I" + struct.pack("!I", 16415) + b"N"
           + tuple_data(["42", None, b"\x00\x01"]))
    seeds = {
        "begin": b"B" + struct.pack("!QqI", 0x16B374D848, ts, 735),
        "commit": b"C\0" + struct.pack("!QQq", 0x16B374D848, 0x16B374D878, ts),
        "origin": b"O" + struct.pack("!Q", 0xABCDEF0123) + cstr("upstream1"),
        "relation": rel,
        "type": b"Y" + struct.pack("!I", 16409) + cstr("public") + cstr("mood"),
        "insert": ins,
        "update": b"U" + struct.pack("!I", 7) + b"N" + tuple_data(["1", "u"]),
        "update_key": (b"U" + struct.pack("!I", 7) + b"K"
                       + tuple_data(["1", None]) + b"N"
                       + tuple_data(["2", "x"])),
        "update_old": (b"U" + struct.pack("!I", 8) + b"O" + tuple_data(["a"])
                       + b"N" + tuple_data(["b"])),
        "delete": b"D" + struct.pack("!I", 9) + b"K" + tuple_data(["-5", None]),
        "truncate": b"T" + struct.pack("!IB", 2, 1) + struct.pack(
            "!II", 16415, 16422),
        "message": (b"M\1" + struct.pack("!Q", 0x1932F48) + cstr("pfx")
                    + struct.pack("!I", 5) + b"hello"),
        "keepalive_reply": b"k" + struct.pack("!Qq", 0x16B374D848, ts) + b"\1",
        "xlog_insert": xlogdata(0x16B374D848, 0x16B374D900, ts, ins),
        "xlog_empty": xlogdata(1, 2, ts, b""),
        "lsn": "16/B374D848",
        # Damaged: truncated, a count over PGO_MAX_COLS, a string without
        # its NUL, a trailing byte, a bad tuple kind, a v2 stream message.
        "bad_truncated": rel[:-3],
        "bad_ncols": (b"I" + struct.pack("!I", 1) + b"N"
                      + struct.pack("!H", 1665) + b"n" * 1665),
        "bad_no_nul": b"O" + struct.pack("!Q", 1) + b"upstream1",
        "bad_trailing": ins + b"\0",
        "bad_tuple_kind": b"I" + struct.pack("!I", 1) + b"N\0\1x",
        "bad_stream_start": b"S" + struct.pack("!I", 735) + b"\1",
        "bad_keepalive_long": b"k" + struct.pack("!Qq", 1, ts) + b"\0\0",
    }
    for name, data in seeds.items():
        write(t, name, data)


if __name__ == "__main__":
    protocol()
    sql()
    scram()
    urls()
    pgoutput()
