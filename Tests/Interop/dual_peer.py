"""A dual-channel peer in grpcio: a server and a client in one process, as the article's
alternative design describes ("each side is both client and server").

It serves `sendStatus` (answering each message, as the article's server does) and calls the
other peer's `sendStatus` with `--requests` messages, checking every reply matches its message,
in order. It exits once it has answered `--expect` messages and got all its replies, with a
one-line summary, 0 only if nothing was lost, duplicated or mismatched.
"""
import argparse
import threading
import time
from concurrent import futures

import grpc
from contact import contact_pb2
from contact import contact_pb2_grpc

from interop_common import add_tls_arguments, add_port, make_channel, Summary


class Servicer(contact_pb2_grpc.ContactServicer):
    def __init__(self, summary, done, expect):
        self.summary = summary
        self.done = done
        self.expect = expect

    def sendStatus(self, request_iterator, context):
        for note in request_iterator:
            self.summary.append("answered", note.msg)
            yield contact_pb2.Result(ret=f"服务端接收到消息:{note.msg}")
            if len(self.summary.items("answered")) >= self.expect:
                self.done.set()


def call_other(args, summary):
    messages = [f"dual {n}" for n in range(args.requests)]
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        try:
            with make_channel(args, args.connect) as channel:
                stub = contact_pb2_grpc.ContactStub(channel)
                replies = stub.sendStatus(iter([contact_pb2.ClientMsg(msg=m) for m in messages]),
                                          wait_for_ready=True, timeout=max(1, deadline - time.time()))
                for reply in replies:
                    summary.append("replies", reply.ret)
                return
        except grpc.RpcError as e:
            summary.append("retries", f"{e.code()}")
            time.sleep(0.2)


def main(args):
    summary = Summary("dual_peer")
    done = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    contact_pb2_grpc.add_ContactServicer_to_server(Servicer(summary, done, args.expect), server)
    port = add_port(server, args, args.listen)
    server.start()
    print(f"listening on port {port}", flush=True)
    call_other(args, summary)
    answered_all = done.wait(timeout=args.timeout)
    time.sleep(0.5)
    server.stop(grace=1).wait()
    replies = summary.items("replies")
    matched = len(replies) == args.requests and all(
        reply.endswith(f"dual {n}") for n, reply in enumerate(replies))
    ok = answered_all and matched and len(summary.items("answered")) == args.expect
    summary.finish(ok, sent=args.requests, replies=len(replies), replies_matched=matched,
                   answered=len(summary.items("answered")))


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:50052")
    parser.add_argument("--connect", required=True, help="the other peer's HOST:PORT")
    parser.add_argument("--requests", type=int, default=10, help="messages to send")
    parser.add_argument("--expect", type=int, default=10, help="messages to answer")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--quiet", action="store_true")
    add_tls_arguments(parser)
    main(parser.parse_args())
