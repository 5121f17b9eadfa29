"""What the interop programs share: TLS flags, channels and servers, and the summary line."""
import json
import sys
import threading

import grpc


def add_tls_arguments(parser):
    parser.add_argument("--ca", help="CA certificate (PEM) to trust")
    parser.add_argument("--cert", help="this program's certificate (PEM)")
    parser.add_argument("--key", help="this program's private key (PEM)")
    parser.add_argument("--server-name", default=None,
                        help="name to expect in the server's certificate (default: the host)")
    parser.add_argument("--insecure", action="store_true", help="plaintext, no TLS")


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def make_channel(args, address=None):
    address = address or args.address
    if args.insecure:
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(args.ca),
        private_key=_read(args.key) if args.key else None,
        certificate_chain=_read(args.cert) if args.cert else None,
    )
    options = []
    if args.server_name:
        options.append(("grpc.ssl_target_name_override", args.server_name))
    return grpc.secure_channel(address, credentials, options=options)


def add_port(server, args, address):
    if args.insecure:
        return server.add_insecure_port(address)
    credentials = grpc.ssl_server_credentials(
        [(_read(args.key), _read(args.cert))],
        root_certificates=_read(args.ca),
        require_client_auth=True,
    )
    return server.add_secure_port(address, credentials)


class Summary:
    """Counts what a program saw, and prints one line at the end."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.counters = {}
        self.lists = {}
        self.errors = []

    def count(self, key):
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def counter(self, key):
        with self.lock:
            return self.counters.get(key, 0)

    def append(self, key, value):
        with self.lock:
            self.lists.setdefault(key, []).append(value)

    def items(self, key):
        with self.lock:
            return list(self.lists.get(key, []))

    def error(self, message):
        with self.lock:
            self.errors.append(message)
        print(message, file=sys.stderr)

    def finish(self, ok, **figures):
        line = {"program": self.name, "ok": bool(ok), **figures}
        if self.errors:
            line["errors"] = self.errors[:5]
        print(("PASS " if ok else "FAIL ") + json.dumps(line, ensure_ascii=False), flush=True)
        sys.exit(0 if ok else 1)
