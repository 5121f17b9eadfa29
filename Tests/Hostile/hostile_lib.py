"""Building blocks of the hostile-input suite: TLS contexts, raw HTTP/2 frames, gRPC messages,
a `peer-agent run` process, a good peer that must stay served, and an RSS sampler.

Raw frames are written by hand where h2 would refuse to send them (that is the point);
hpack encodes header blocks; grpcio is the well-behaved client.
"""
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

import grpc
import hpack

import contact_pb2
import contact_pb2_grpc

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
REFUSED_STREAM = 0x7


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def grpc_message(payload, compressed=0, length=None):
    return bytes([compressed]) + struct.pack(">I", len(payload) if length is None else length) + payload


def client_msg(text, id=""):
    return contact_pb2.ClientMsg(msg=text, id=id).SerializeToString()


def request_headers(path="/Contact/sendStatus", extra=(), authority="hub", content_type="application/grpc"):
    headers = [(":method", "POST"), (":scheme", "https"), (":path", path), (":authority", authority),
               ("content-type", content_type), ("te", "trailers")]
    return headers + list(extra)


class Certs:
    def __init__(self, main, other, expired):
        self.main, self.other, self.expired = main, other, expired

    def pair(self, name, folder=None):
        folder = folder or self.main
        return os.path.join(folder, f"{name}.pem"), os.path.join(folder, f"{name}-key.pem")

    @property
    def ca(self):
        return os.path.join(self.main, "ca.pem")


def tls_context(certs, name="attacker", folder=None, with_cert=True, maximum=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(certs.ca)
    if with_cert:
        ctx.load_cert_chain(*certs.pair(name, folder))
    ctx.set_alpn_protocols(["h2"])
    if maximum is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = maximum
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
    return ctx


class Wire:
    """A raw HTTP/2 connection: bytes out, frames in."""

    def __init__(self, port, ctx=None, source="127.0.0.1", timeout=5):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.sock = ctx.wrap_socket(raw, server_hostname="hub") if ctx else raw
        self.sock.settimeout(timeout)
        self.buffer = b""
        self.encoder = hpack.Encoder()
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def start(self, *pairs):
        self.send(PREFACE + settings(*pairs))

    def headers(self, stream, headers, end_stream=False, end_headers=True):
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        self.send(frame(HEADERS, flags, stream, self.encoder.encode(headers)))

    def data(self, stream, payload, end_stream=False):
        self.send(frame(DATA, END_STREAM if end_stream else 0, stream, payload))

    def read_frame(self, timeout=5):
        """The next frame (type, flags, stream, payload), or None when the connection closed."""
        deadline = time.time() + timeout
        while len(self.buffer) < 9 or len(self.buffer) < 9 + int.from_bytes(self.buffer[:3], "big"):
            remaining = deadline - time.time()
            if remaining <= 0:
                raise TimeoutError("no frame")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError, OSError) as error:
                if isinstance(error, socket.timeout):
                    raise TimeoutError("no frame")
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buffer += chunk
        length = int.from_bytes(self.buffer[:3], "big")
        kind, flags = self.buffer[3], self.buffer[4]
        stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
        payload = self.buffer[9:9 + length]
        self.buffer = self.buffer[9 + length:]
        try:
            if kind == SETTINGS and not flags & ACK:
                self.send(frame(SETTINGS, ACK, 0))
            if kind == PING and not flags & ACK:
                self.send(frame(PING, ACK, 0, payload))
        except OSError:
            pass  # the listener closed its side: what is still buffered is read first
        return kind, flags, stream, payload

    def frames(self, timeout=5, until=lambda f: False):
        """Frames until `until` holds, the connection closes, or the time is up."""
        seen = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                f = self.read_frame(deadline - time.time())
            except TimeoutError:
                break
            if f is None:
                break
            seen.append(f)
            if until(f):
                break
        return seen

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def server_settings(frames):
    for kind, flags, stream, payload in frames:
        if kind == SETTINGS and not flags & ACK:
            return {struct.unpack(">H", payload[i:i + 2])[0]: struct.unpack(">I", payload[i + 2:i + 6])[0]
                    for i in range(0, len(payload), 6)}
    return None


def goaway(frames):
    for kind, _, _, payload in frames:
        if kind == GOAWAY:
            return struct.unpack(">I", payload[4:8])[0]
    return None


def decode_headers(decoder, payload, flags):
    if flags & 0x8:  # PADDED
        payload = payload[1:len(payload) - payload[0]]
    if flags & 0x20:  # PRIORITY
        payload = payload[5:]
    return dict(decoder.decode(payload))


def grpc_status(frames, stream, decoder=None):
    """The first way a stream ended: its grpc-status (from its trailers), 'RST:<code>', or None."""
    decoder = decoder or hpack.Decoder()
    status = None
    for kind, flags, sid, payload in frames:
        if status is not None and kind == HEADERS:
            decode_headers(decoder, payload, flags)  # keep the HPACK table in step
            continue
        if status is not None:
            continue
        if kind == HEADERS:
            headers = decode_headers(decoder, payload, flags)
            if sid == stream and "grpc-status" in headers:
                status = int(headers["grpc-status"])
            elif sid == stream and headers.get(":status", "200") != "200":
                status = "HTTP:" + headers[":status"]
        elif kind == RST_STREAM and sid == stream:
            status = "RST:%d" % struct.unpack(">I", payload)[0]
    return status


class PeerAgentProcess:
    """A `peer-agent run` process, its JSON events and its log."""

    def __init__(self, binary, args, log_path, preexec=None):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([binary, "run", "--output", "json", "--log-level", "notice", "--in-memory"] + args,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     bufsize=1, preexec_fn=preexec)
        self.events, self.lock = [], threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.lock:
                self.events.append(event)

    def wait_for(self, name, timeout=30, where=lambda e: True, after=0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                found = [e for e in self.events[after:] if e.get("event") == name and where(e)]
            if found:
                return found[0]
            if self.proc.poll() is not None:
                return None
            time.sleep(0.01)
        return None

    def mark(self):
        with self.lock:
            return len(self.events)

    def send_line(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def rss_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return 0
        return 0

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return -1

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class RSSSampler:
    """Samples a process's RSS every 20 ms while a case runs; keeps the peak."""

    def __init__(self, process):
        self.process, self.peak, self.running = process, 0, False

    def __enter__(self):
        self.running = True
        self.peak = self.process.rss_kib()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while self.running:
            self.peak = max(self.peak, self.process.rss_kib())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.process.rss_kib())


class GoodPeer:
    """What must keep working whatever the attack: a fresh grpcio client (its own connection
    and handshake) answered on sendStatus, and the hub's request to its connected edge
    answered, each within `limit` seconds."""

    def __init__(self, hub, port, certs, limit=2.0):
        self.hub, self.port, self.certs, self.limit = hub, port, certs, limit
        self.count = 0

    def fresh_call(self, port=None):
        cert, key = self.certs.pair("good")
        credentials = grpc.ssl_channel_credentials(open(self.certs.ca, "rb").read(), open(key, "rb").read(),
                                                   open(cert, "rb").read())
        start = time.time()
        with grpc.secure_channel(f"127.0.0.1:{port or self.port}", credentials,
                                 options=[("grpc.ssl_target_name_override", "hub")]) as channel:
            stub = contact_pb2_grpc.ContactStub(channel)
            self.count += 1
            request = contact_pb2.ClientMsg(msg="still there?", id=f"good-{os.getpid()}-{self.count}-{time.time()}")
            for reply in stub.sendStatus(iter([request]), timeout=self.limit):
                if reply.id == request.id:
                    return time.time() - start
        raise RuntimeError("no reply")

    def hub_to_edge(self):
        self.count += 1
        marker = f"probe-{self.count}"
        after = self.hub.mark()
        start = time.time()
        self.hub.send_line(f"@edge {marker}")
        event = self.hub.wait_for("reply", timeout=self.limit, after=after,
                                  where=lambda e: marker in json.dumps(e))
        if event is None:
            raise RuntimeError("the edge's reply did not come within %.1f s" % self.limit)
        return time.time() - start

    def check(self, port=None, edge=True):
        """None when served, else why not."""
        try:
            took = self.fresh_call(port)
            if took > self.limit:
                return "a fresh client was served in %.2f s" % took
            if edge:
                took = self.hub_to_edge()
                if took > self.limit:
                    return "the edge answered in %.2f s" % took
        except Exception as error:  # noqa: BLE001 - any failure is the answer
            return "good peer not served: %s" % (str(error).splitlines()[0] if str(error) else type(error).__name__)
        return None
