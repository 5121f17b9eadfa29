"""Runs the article's programs (grpcio) against peer-agent, in both roles and both modes, and
checks that every task, acknowledgement and reply arrives once, matched to its own request.

Called by scripts/interop.sh, which prepares the virtual environment, the stubs and the
certificates. Prints one line per scenario and `N passed, N failed` at the end.
"""
import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeerAgent:
    """A `peer-agent run` process: JSON events from its stdout, lines to its stdin."""

    def __init__(self, binary, args, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([binary, "run", "--output", "json", "--log-level", "notice", "--in-memory"] + args,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        self.events = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.lock:
                self.events.append(event)

    def of(self, name):
        with self.lock:
            return [e for e in self.events if e.get("event") == name]

    def wait_for(self, name, count=1, timeout=60, where=lambda e: True):
        deadline = time.time() + timeout
        while time.time() < deadline:
            matching = [e for e in self.of(name) if where(e)]
            if len(matching) >= count:
                return matching
            if self.proc.poll() is not None and name != "exit":
                break
            time.sleep(0.05)
        return [e for e in self.of(name) if where(e)]

    def send_lines(self, lines, close=False):
        for line in lines:
            self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        if close:
            self.proc.stdin.close()

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


class Python:
    def __init__(self, python, script, args, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([python, os.path.join(HERE, script)] + args,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def summary(self):
        with open(self.log_path) as f:
            lines = [l.strip() for l in f if l.startswith("PASS ") or l.startswith("FAIL ")]
        return lines[-1] if lines else "(no summary)"


class Run:
    def __init__(self, args):
        self.args = args
        self.passed = 0
        self.failed = 0
        self.tls = args.security == "mtls"

    def check(self, scenario, ok, detail):
        status = "ok  " if ok else "FAIL"
        print(f"{status} [{self.args.security}] {scenario}: {detail}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def log(self, name):
        # With --repeat, each run keeps its own logs (run-N-...): a failure's are not overwritten.
        run = f"run-{self.round}-" if getattr(self, "round", 0) else ""
        return os.path.join(self.args.logs, f"{run}{self.args.security}-{name}.log")

    def peer_tls(self, name):
        return ["--certs", self.args.certs] if self.tls else ["--insecure"]

    def py_tls(self, name, server_name=None, certs=None):
        if not self.tls:
            return ["--insecure"]
        certs = certs or self.args.certs
        flags = ["--ca", os.path.join(self.args.certs, "ca.pem"),
                 "--cert", os.path.join(certs, f"{name}.pem"),
                 "--key", os.path.join(certs, f"{name}-key.pem")]
        if server_name:
            flags += ["--server-name", server_name]
        return flags

    # 1. the article's client against a single-channel peer-agent listener
    def article_client(self):
        n, m = self.args.tasks, 15
        hub = PeerAgent(self.args.peer_agent, ["--name", "hub", "--mode", "single",
                                               "--listen", "127.0.0.1:0", "--exit-on-eof",
                                               "--request-timeout", "120"] + self.peer_tls("hub"),
                        self.log("hub-vs-article-client"))
        listening = hub.wait_for("listening", timeout=30)
        if not listening:
            hub.stop()
            return self.check("article client -> peer-agent listener", False, "the hub did not listen")
        address = listening[0]["address"]
        client = Python(self.args.python, "contact_client.py",
                        ["--address", address, "--tasks", str(n), "--status", str(m), "--quiet",
                         "--timeout", "120"] + self.py_tls("article-client", "hub"),
                        self.log("article-client"))
        tasks = [f"task {i}" for i in range(n)]
        # A plain line on a listener goes to the connected peers: with none yet it is refused
        # at once, so the lines go in once the client is connected.
        hub.wait_for("connected", timeout=60)
        hub.send_lines(tasks, close=True)
        client_status = client.wait(timeout=180)
        hub_status = hub.proc.wait(timeout=180)
        replies = hub.of("reply")
        texts = [r["text"] for r in replies]
        matched = all(r["reply"] == f"客户端接收到任务:{r['text']}" for r in replies)
        requests = hub.of("request")
        expected_peer = "article-client" if self.tls else None
        from_client = all((expected_peer is None) or r["peer"] == expected_peer for r in requests)
        ok = (client_status == 0 and hub_status == 0 and len(replies) == n
              and sorted(texts) == sorted(tasks) and len(set(r["id"] for r in replies)) == n
              and matched and len(requests) == m and from_client and not hub.of("error"))
        self.check("article client -> peer-agent listener", ok,
                   f"{len(replies)}/{n} tasks pushed on getTask and acknowledged on tellResult, "
                   f"matched={matched}; {len(requests)}/{m} sendStatus answered; "
                   f"hub exit {hub_status}; client: {client.summary()}")

    # 2. a peer-agent dialer against the article's server
    def article_server(self):
        n, m = self.args.tasks, 50
        port = free_port()
        server = Python(self.args.python, "contact_server.py",
                        ["--address", f"127.0.0.1:{port}", "--tasks", str(n), "--status", str(m),
                         "--quiet", "--timeout", "120"] + self.py_tls("article-server"),
                        self.log("article-server"))
        target = f"article-server@127.0.0.1:{port}" if self.tls else f"127.0.0.1:{port}"
        edge = PeerAgent(self.args.peer_agent, ["--name", "edge", "--mode", "single", "--connect", target,
                                                "--request-timeout", "120"] + self.peer_tls("edge"),
                         self.log("edge-vs-article-server"))
        statuses = [f"status {i}" for i in range(m)]
        edge.send_lines(statuses)
        server_status = server.wait(timeout=180)
        edge.wait_for("reply", count=m, timeout=30)
        edge_status = edge.stop()
        requests = edge.of("request")
        replies = edge.of("reply")
        tasks_in_order = [r["text"] for r in requests] == [f"任务:{i}" for i in range(n)]
        matched = all(r["reply"] == f"服务端接收到消息:{r['text']}" for r in replies)
        ok = (server_status == 0 and edge_status == 0 and len(requests) == n and tasks_in_order
              and len(replies) == m and matched and sorted(r["text"] for r in replies) == sorted(statuses))
        self.check("peer-agent dialer -> article server", ok,
                   f"{len(requests)}/{n} tasks received in order and acknowledged; "
                   f"{len(replies)}/{m} sendStatus replies matched={matched}; edge exit {edge_status}; "
                   f"server: {server.summary()}")

    # 2b. a grpcio server that ends getTask (OK) right after pushing its tasks: every task is
    # acknowledged once, in order, on tellResult, and none is handled twice
    def server_ends_get_task(self):
        n = 500
        port = free_port()
        server = Python(self.args.python, "contact_server.py",
                        ["--address", f"127.0.0.1:{port}", "--tasks", str(n), "--status", "0",
                         "--end-get-task", "--quiet", "--timeout", "60"] + self.py_tls("article-server"),
                        self.log("server-ends-gettask"))
        target = f"article-server@127.0.0.1:{port}" if self.tls else f"127.0.0.1:{port}"
        edge = PeerAgent(self.args.peer_agent, ["--name", "edge", "--mode", "single", "--connect", target,
                                                "--backoff-initial", "0.05"] + self.peer_tls("edge"),
                         self.log("edge-vs-server-ends-gettask"))
        server_status = server.wait(timeout=90)
        edge.stop()
        requests = edge.of("request")
        texts = [r["text"] for r in requests]
        in_order = texts == [f"任务:{i}" for i in range(n)]
        ok = server_status == 0 and len(requests) == n and in_order
        self.check("grpcio server ends getTask after its tasks", ok,
                   f"{len(requests)}/{n} tasks handled once, in order={in_order}; server: {server.summary()}")

    # 2c. a grpcio server that pushes every task again on every getTask and then ends it, and
    # reads acknowledgements slowly (20 ms each: 10 s for 500), while the dialer sends on
    # sendStatus: every acknowledgement of the first getTask arrives on its tellResult, in
    # order, and every sendStatus line is answered once
    def server_ends_every_get_task(self):
        n, m = 500, 200
        port = free_port()
        server = Python(self.args.python, "contact_server.py",
                        ["--address", f"127.0.0.1:{port}", "--tasks", str(n), "--status", str(m),
                         "--end-every-get-task", "--ack-delay", "0.02", "--quiet", "--timeout", "90"]
                        + self.py_tls("article-server"),
                        self.log("server-ends-every-gettask"))
        target = f"article-server@127.0.0.1:{port}" if self.tls else f"127.0.0.1:{port}"
        edge = PeerAgent(self.args.peer_agent, ["--name", "edge", "--mode", "single", "--connect", target,
                                                "--request-timeout", "120"] + self.peer_tls("edge"),
                         self.log("edge-vs-server-ends-every-gettask"))
        edge.send_lines([f"status {i}" for i in range(m)])
        server_status = server.wait(timeout=120)
        edge.stop()
        summary = server.summary()
        ok = server_status == 0
        self.check("grpcio server ends every getTask, sendStatus beside it", ok,
                   f"server: {summary}; edge resent {len(edge.of('resent'))}")

    # 3. dual-channel: a grpcio peer (server + client) and peer-agent --mode dual
    def dual(self):
        n = self.args.tasks
        hub_port, py_port = free_port(), free_port()
        target = f"dual-peer@127.0.0.1:{py_port}" if self.tls else f"127.0.0.1:{py_port}"
        hub = PeerAgent(self.args.peer_agent, ["--name", "hub", "--mode", "dual",
                                               "--listen", f"127.0.0.1:{hub_port}", "--connect", target,
                                               "--request-timeout", "120"] + self.peer_tls("hub"),
                        self.log("hub-dual"))
        peer = Python(self.args.python, "dual_peer.py",
                      ["--listen", f"127.0.0.1:{py_port}", "--connect", f"127.0.0.1:{hub_port}",
                       "--requests", str(n), "--expect", str(n), "--timeout", "120"]
                      + self.py_tls("dual-peer", "hub"), self.log("dual-peer"))
        lines = [f"dual hub {i}" for i in range(n)]
        hub.send_lines(lines)
        peer_status = peer.wait(timeout=180)
        hub.wait_for("reply", count=n, timeout=30)
        hub_status = hub.stop()
        replies = hub.of("reply")
        requests = hub.of("request")
        matched = all(r["reply"] == f"服务端接收到消息:{r['text']}" for r in replies)
        ok = (peer_status == 0 and hub_status == 0 and len(replies) == n and matched
              and sorted(r["text"] for r in replies) == sorted(lines) and len(requests) == n
              and [r["text"] for r in requests] == [f"dual {i}" for i in range(n)])
        self.check("dual-channel: grpcio peer <-> peer-agent", ok,
                   f"peer-agent -> grpcio {len(replies)}/{n} replies matched={matched}; "
                   f"grpcio -> peer-agent {len(requests)}/{n} requests; hub exit {hub_status}; "
                   f"grpcio: {peer.summary()}")

    # Wrong set-ups: refused, and peer-agent says why
    def refusals(self):
        cases = [
            ("a grpcio client without a certificate", ["--ca", os.path.join(self.args.certs, "ca.pem"),
                                                      "--server-name", "hub"], "no client certificate"),
            ("a grpcio client with a certificate from another CA",
             self.py_tls("intruder", "hub", certs=self.args.other_certs), "does not chain to the configured CA"),
        ]
        for name, flags, reason in cases:
            hub = PeerAgent(self.args.peer_agent, ["--name", "hub", "--mode", "single",
                                                   "--listen", "127.0.0.1:0"] + self.peer_tls("hub"),
                            self.log("hub-refusal"))
            listening = hub.wait_for("listening", timeout=30)
            address = listening[0]["address"] if listening else "127.0.0.1:1"
            client = Python(self.args.python, "contact_client.py",
                            ["--address", address, "--tasks", "1", "--status", "1", "--quiet",
                             "--timeout", "10"] + flags, self.log("refused-client"))
            client_status = client.wait(timeout=30)
            errors = hub.wait_for("error", timeout=10, where=lambda e: reason in e.get("message", ""))
            hub.stop()
            ok = client_status not in (0, None) and bool(errors) and not hub.of("request")
            self.check(f"refused: {name}", ok,
                       f"client exit {client_status}; peer-agent: "
                       f"{errors[0]['message'] if errors else 'no matching error event'}")


    # 7. grpcio's own health client (grpcio-health-checking) against a peer-agent listener
    def health(self):
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        hub = PeerAgent(self.args.peer_agent, ["--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0",
                                               "--shutdown-grace", "10"] + self.peer_tls("hub"),
                        self.log("hub-health"))
        listening = hub.wait_for("listening", timeout=30)
        if not listening:
            hub.stop()
            return self.check("grpcio health client", False, "the hub did not listen")
        address = listening[0]["address"]
        if self.tls:
            ca = open(os.path.join(self.args.certs, "ca.pem"), "rb").read()
            key = open(os.path.join(self.args.certs, "article-client-key.pem"), "rb").read()
            cert = open(os.path.join(self.args.certs, "article-client.pem"), "rb").read()
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert),
                                          options=[("grpc.ssl_target_name_override", "hub")])
        else:
            channel = grpc.insecure_channel(address)
        outcome = {}
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            outcome["check"] = health_pb2.HealthCheckResponse.ServingStatus.Name(
                stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status)
            outcome["check Contact"] = health_pb2.HealthCheckResponse.ServingStatus.Name(
                stub.Check(health_pb2.HealthCheckRequest(service="Contact"), timeout=10).status)
            try:
                stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
                outcome["unknown"] = "answered"
            except grpc.RpcError as error:
                outcome["unknown"] = error.code().name
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
            first = next(watch)
            outcome["watch"] = health_pb2.HealthCheckResponse.ServingStatus.Name(first.status)
            hub.proc.terminate()  # SIGTERM: the hub drains
            try:
                second = next(watch)
                outcome["watch after SIGTERM"] = health_pb2.HealthCheckResponse.ServingStatus.Name(second.status)
            except (StopIteration, grpc.RpcError) as error:
                outcome["watch after SIGTERM"] = f"ended: {error}"
        except Exception as error:  # noqa: BLE001 - any failure is the finding
            outcome["error"] = str(error).splitlines()[0]
        finally:
            channel.close()
            hub.stop()
        ok = (outcome.get("check") == "SERVING" and outcome.get("check Contact") == "SERVING"
              and outcome.get("unknown") == "NOT_FOUND" and outcome.get("watch") == "SERVING"
              and outcome.get("watch after SIGTERM") == "NOT_SERVING")
        self.check("grpcio health client -> peer-agent listener", ok,
                   ", ".join(f"{k}: {v}" for k, v in outcome.items()))


class SpanSink:
    """A test OTLP/gRPC receiver: the TraceService of the OpenTelemetry collector, keeping every
    span it is sent, with the `service.instance.id` of the process that sent it."""

    def __init__(self):
        from concurrent import futures
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        sink = self
        self.spans = []
        self.lock = threading.Lock()

        class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                for resource_spans in request.resource_spans:
                    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            with sink.lock:
                                sink.spans.append((attributes.get("service.instance.id"), span))
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def of(self, instance, name):
        with self.lock:
            return [span for who, span in self.spans if who == instance and span.name == name]

    def stop(self):
        self.server.stop(grace=1)


def traces(run):
    """Two peer-agent processes export to a test OTLP receiver: the edge's `send` spans and the
    hub's `handle` spans share their traces (parent and child), and so do the hub's request down
    getTask and the edge's handling of it — the reverse direction."""
    sink = SpanSink()
    endpoint = f"http://127.0.0.1:{sink.port}"
    hub = PeerAgent(run.args.peer_agent, ["--name", "hub", "--mode", "single", "--listen", "127.0.0.1:0",
                                          "--otlp-endpoint", endpoint] + run.peer_tls("hub"), run.log("hub-traces"))
    edge = None
    try:
        listening = hub.wait_for("listening", timeout=30)
        if not listening:
            return run.check("traces across both peers", False, "the hub did not listen")
        edge = PeerAgent(run.args.peer_agent, ["--name", "edge", "--mode", "single", "--connect",
                                               f"hub@{listening[0]['address']}", "--otlp-endpoint", endpoint]
                         + run.peer_tls("edge"), run.log("edge-traces"))
        edge.wait_for("connected", timeout=30)
        edge.send_lines([f"traced {i}" for i in range(3)])
        replies = edge.wait_for("reply", count=3, timeout=30)
        hub.send_lines(["@edge traced back"])
        back = hub.wait_for("reply", timeout=30)
        deadline = time.time() + 15
        while time.time() < deadline and (len(sink.of("hub", "handle")) < 3 or not sink.of("edge", "handle")):
            time.sleep(0.1)
        sends = {s.span_id: s for s in sink.of("edge", "send")}
        handles = sink.of("hub", "handle")
        joined = [h for h in handles if h.parent_span_id in sends and sends[h.parent_span_id].trace_id == h.trace_id]
        reverse_sends = {s.span_id: s for s in sink.of("hub", "send")}
        reverse = [h for h in sink.of("edge", "handle")
                   if h.parent_span_id in reverse_sends and reverse_sends[h.parent_span_id].trace_id == h.trace_id]
        reply_traces = {r.get("trace_id") for r in replies}
        span_traces = {s.trace_id.hex() for s in sends.values()}
        kinds_ok = all(s.kind == 3 for s in sends.values()) and all(h.kind == 2 for h in handles)  # CLIENT, SERVER
        ok = (len(replies) == 3 and len(back) == 1 and len(joined) == 3 and len(reverse) == 1
              and kinds_ok and reply_traces == span_traces)
        run.check("traces across both peers (OTLP receiver)", ok,
                  f"{len(sends)} send spans from edge, {len(joined)} hub handle spans in their traces, "
                  f"{len(reverse)} reverse (getTask) handled in the hub's trace, reply events' trace_id match: "
                  f"{reply_traces == span_traces}")
    finally:
        if edge:
            edge.stop()
        hub.stop()
        sink.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-agent", required=True)
    parser.add_argument("--python", required=True)
    parser.add_argument("--certs", required=True)
    parser.add_argument("--other-certs", required=True)
    parser.add_argument("--logs", required=True)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--security", choices=["mtls", "plaintext"], action="append")
    parser.add_argument("--only", default="", help="run only this scenario (a method of Run), e.g. server_ends_every_get_task")
    parser.add_argument("--repeat", type=int, default=1, help="with --only: run it this many times")
    args = parser.parse_args()
    passed = failed = 0
    for security in args.security or ["mtls", "plaintext"]:
        args.security = security
        run = Run(args)
        if args.only:
            for round in range(args.repeat):
                run.round = round + 1 if args.repeat > 1 else 0
                getattr(run, args.only)()
            passed += run.passed
            failed += run.failed
            continue
        run.article_client()
        run.article_server()
        run.server_ends_get_task()
        run.server_ends_every_get_task()
        run.dual()
        run.health()
        if run.tls:
            run.refusals()
            traces(run)
        passed += run.passed
        failed += run.failed
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
