"""Stand-ins for a cluster's services, for `deploy/local/images.sh check`: do the static
binaries in FROM scratch images find and trust what a pod is given?

    python3 stubs.py dns ADDRESS NAME=IPV4...
        UDP DNS on ADDRESS:53: an A record for each NAME (exact, case-insensitive), no
        records (NOERROR) for other types of a known NAME, NXDOMAIN for any other name, so
        that a resolver walking its search list (ndots) has to reach the right one. One
        line per query: "A rabbitmq.ns.svc.cluster.local -> 127.0.0.1".

    python3 stubs.py apiserver CERT KEY
        HTTPS on 127.0.0.1 (a free port, printed as "port N") with CERT and KEY, answering
        every request 403 as a kube-apiserver would refuse it. One line per request that
        got through TLS: "GET /apis/... bearer=yes".

Each prints "ready" once listening and serves until killed. Standard library only.
"""

import http.server
import socket
import ssl
import struct
import sys

TYPE_A = 1
TYPE_NAMES = {1: "A", 28: "AAAA"}
CLASS_IN = 1
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3


def parse_question(packet: bytes) -> tuple[str, int, int]:
    """The first question's name, type and the offset after it."""
    labels, offset = [], 12
    while True:
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        labels.append(packet[offset : offset + length].decode("ascii").lower())
        offset += length
    qtype, _qclass = struct.unpack("!HH", packet[offset : offset + 4])
    return ".".join(labels), qtype, offset + 4


def dns_answer(packet: bytes, records: dict[str, bytes]) -> tuple[bytes, str]:
    query_id, flags = struct.unpack("!HH", packet[:4])
    recursion_desired = flags & 0x0100
    try:
        name, qtype, end = parse_question(packet)
    except (IndexError, UnicodeDecodeError, struct.error):
        header = struct.pack("!HHHHHH", query_id, 0x8000 | RCODE_FORMERR, 0, 0, 0, 0)
        return header, "malformed query"
    question = packet[12:end]
    answers = b""
    if name not in records:
        rcode, note = RCODE_NXDOMAIN, "NXDOMAIN"
    elif qtype == TYPE_A:
        # A pointer to the question's name (offset 12), type A, class IN, TTL 5 s.
        answers = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 5, 4) + records[name]
        rcode, note = 0, socket.inet_ntoa(records[name])
    else:
        rcode, note = 0, "no records"
    flags = 0x8000 | 0x0400 | recursion_desired | 0x0080 | rcode  # QR AA RD RA
    header = struct.pack("!HHHHHH", query_id, flags, 1, 1 if answers else 0, 0, 0)
    kind = TYPE_NAMES.get(qtype, f"type {qtype}")
    return header + question + answers, f"{kind} {name} -> {note}"


def serve_dns(address: str, specs: list[str]) -> None:
    records = {}
    for spec in specs:
        name, ip = spec.split("=", 1)
        records[name.lower().rstrip(".")] = socket.inet_aton(ip)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    print("ready", flush=True)
    while True:
        packet, peer = sock.recvfrom(512)
        if len(packet) < 12:
            continue
        reply, line = dns_answer(packet, records)
        sock.sendto(reply, peer)
        print(line, flush=True)


class Refusing(http.server.BaseHTTPRequestHandler):
    BODY = (
        b'{"kind":"Status","apiVersion":"v1","status":"Failure",'
        b'"message":"stub apiserver","reason":"Forbidden","code":403}'
    )

    def refuse(self) -> None:
        bearer = self.headers.get("Authorization", "").startswith("Bearer ")
        print(f"{self.command} {self.path} bearer={'yes' if bearer else 'no'}", flush=True)
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = refuse

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_apiserver(cert: str, key: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"port {server.server_address[1]}", flush=True)
    print("ready", flush=True)
    server.serve_forever()


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "dns":
        serve_dns(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "apiserver":
        serve_apiserver(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
