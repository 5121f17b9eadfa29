"""A `peer-agent bench` worker in grpcio: the article's stack, on the same Contact service and
the same workloads, so the bench can set PeerAgent beside what users would run instead.

Speaks the bench-worker protocol: JSON commands on stdin (`load`, `exit`), JSON events on stdout
(`listening`, `connected`, `result`). Dialer -> listener: one `sendStatus` stream per load;
listener -> dialer: pushed down the dialer's `getTask`, answered on `tellResult`; replies are
taken in order (no ids), with at most `window` in flight.
"""
import argparse
import json
import queue
import sys
import threading
import time
from concurrent import futures

import grpc
from contact import contact_pb2
from contact import contact_pb2_grpc


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def summary(latencies):
    s = sorted(latencies)
    def at(q):
        if not s:
            return 0.0
        return s[min(len(s) - 1, max(0, int(-(-q * len(s) // 1)) - 1))]
    step = max(1, len(s) // 200)
    cdf = [[s[i], (i + 1) / len(s)] for i in range(0, len(s), step)]
    if s:
        cdf.append([s[-1], 1.0])
    return {"count": len(s), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999),
            "max": s[-1] if s else 0.0, "cdf": cdf}


class FIFOTimer:
    def __init__(self, window):
        self.starts = []
        self.head = 0
        self.latencies = []
        self.credits = threading.Semaphore(window)
        self.lock = threading.Lock()

    def start(self):
        self.credits.acquire()
        with self.lock:
            self.starts.append(time.perf_counter())

    def replied(self):
        now = time.perf_counter()
        with self.lock:
            if self.head < len(self.starts):
                self.latencies.append((now - self.starts[self.head]) * 1e6)
                self.head += 1
        self.credits.release()


def result(timer, count, seconds):
    return {"requests": len(timer.latencies), "errors": count - len(timer.latencies),
            "seconds": seconds, "latency": summary(timer.latencies)}


class Servicer(contact_pb2_grpc.ContactServicer):
    def __init__(self):
        self.jobs = queue.Queue()
        self.timer = None

    def sendStatus(self, request_iterator, context):
        for note in request_iterator:
            yield contact_pb2.Result(ret=note.msg)

    def getTask(self, request, context):
        emit({"event": "connected", "peer": "grpcio-dialer"})
        while context.is_active():
            try:
                job = self.jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            command, timer, done = job
            message = contact_pb2.ServerMsg(task="x" * command["payload"])
            for _ in range(command["count"]):
                timer.start()
                yield message
            done.set()

    def tellResult(self, request_iterator, context):
        for _ in request_iterator:
            if self.timer:
                self.timer.replied()
        return contact_pb2.Empty()

    def push(self, command):
        timer = FIFOTimer(command["window"])
        self.timer = timer
        done = threading.Event()
        started = time.perf_counter()
        self.jobs.put((command, timer, done))
        done.wait()
        deadline = time.time() + 60
        while len(timer.latencies) < command["count"] and time.time() < deadline:
            time.sleep(0.0005)
        return result(timer, command["count"], time.perf_counter() - started)


def credentials(args, server):
    def read(path):
        with open(path, "rb") as f:
            return f.read()
    name = args.name
    ca = read(f"{args.certs}/ca.pem")
    cert, key = read(f"{args.certs}/{name}.pem"), read(f"{args.certs}/{name}-key.pem")
    if server:
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def listener(args):
    servicer = Servicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    contact_pb2_grpc.add_ContactServicer_to_server(servicer, server)
    if args.insecure:
        port = server.add_insecure_port(args.listen)
    else:
        port = server.add_secure_port(args.listen, credentials(args, True))
    server.start()
    emit({"event": "listening", "address": f"127.0.0.1:{port}", "peer": args.name})
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("cmd") != "load":
            break
        if command.get("warmup"):
            servicer.push(dict(command, count=command["warmup"]))
        emit({"event": "result", "result": servicer.push(command)})
    server.stop(grace=0.5)


def dialer(args):
    address = args.connect.split("@")[-1]
    if args.insecure:
        channel = grpc.insecure_channel(address)
    else:
        channel = grpc.secure_channel(address, credentials(args, False),
                                      options=[("grpc.ssl_target_name_override", "hub")])
    stub = contact_pb2_grpc.ContactStub(channel)
    grpc.channel_ready_future(channel).result(timeout=30)

    def answer_tasks():
        def acks():
            for task in stub.getTask(contact_pb2.Empty()):
                yield contact_pb2.Result(ret=task.task)
        try:
            stub.tellResult(acks())
        except grpc.RpcError:
            pass
    threading.Thread(target=answer_tasks, daemon=True).start()
    emit({"event": "connected", "peer": "hub"})

    def load(command, count):
        timer = FIFOTimer(command["window"])
        message = contact_pb2.ClientMsg(msg="x" * command["payload"])

        def messages():
            for _ in range(count):
                timer.start()
                yield message
        started = time.perf_counter()
        for _ in stub.sendStatus(messages()):
            timer.replied()
        return result(timer, count, time.perf_counter() - started)

    for line in sys.stdin:
        command = json.loads(line)
        if command.get("cmd") != "load":
            break
        if command.get("warmup"):
            load(command, command["warmup"])
        emit({"event": "result", "result": load(command, command["count"])})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["listener", "dialer"], required=True)
    parser.add_argument("--mode", default="grpcio")
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen")
    parser.add_argument("--connect")
    parser.add_argument("--certs")
    parser.add_argument("--insecure", action="store_true")
    args = parser.parse_args()
    listener(args) if args.role == "listener" else dialer(args)
