"""The article's server (contact_server.py), as close to the article as runs.

Changes from the article, and why:
- `Result(result=…)` named a field the message does not have: it builds `Result(ret=…)`;
- the task queue is filled with `--tasks` tasks `任务:{n}` (numbered, where the article draws
  random numbers, so every task can be told apart and counted) instead of 10 more every 40 s;
- flags for the address, mutual TLS or plaintext, the counts to expect and a quiet mode; it
  stops once every task was acknowledged on `tellResult` and `--status` messages were answered
  on `sendStatus`, with a one-line summary, 0 only when all acknowledgements came back in order.
"""
import argparse
import sys
import threading
import time
from concurrent import futures

import grpc
from contact import contact_pb2_grpc
from contact import contact_pb2

from interop_common import add_tls_arguments, add_port, Summary


class ContactServicer(contact_pb2_grpc.ContactServicer):
    def __init__(self, args, summary, done):
        # 在类初试化的时候定义了一个列表self.tasks来充当任务队列
        self.tasks = []
        self.args = args
        self.summary = summary
        self.done = done
        self.lock = threading.Lock()
        self.pushed = False

    # 注意服务端的具体实现函数是在类里面
    def sendStatus(self, request_iterator, context):
        for note in request_iterator:
            self.summary.count("status_answered")
            self.check_done()
            yield contact_pb2.Result(
                ret=f"服务端接收到消息:{note.msg}"
            )

    def getTask(self, request_iterator, context):
        if self.args.end_every_get_task:
            # Every getTask pushes every task again, then ends (OK): the acknowledgements of
            # the first must all arrive on its tellResult before the dialer opens another.
            for n in range(self.args.tasks):
                yield contact_pb2.ServerMsg(task=f"任务:{n}")
                self.summary.count("tasks_sent")
            return
        if self.args.end_get_task:
            yield from self.push_once_then_end(context)
            return
        if not self.args.quiet:
            print("服务端已接收到客户端上线通知,开始发送任务给客户端\n")
        # 制造些服务端的任务数据用来填充到任务队列里面
        for n in range(self.args.tasks):
            self.tasks.append(contact_pb2.ServerMsg(task=f"任务:{n}"))
        last_index = 0
        while context.is_active() and not self.done.is_set():
            while len(self.tasks) > last_index:
                n = self.tasks[last_index]
                last_index += 1
                yield n
                self.summary.count("tasks_sent")
                if not self.args.quiet:
                    print(f'服务端发送给了客户端任务:{n.task}##########\n')
            time.sleep(0.05)

    def push_once_then_end(self, context):
        # Not the article's: the first getTask pushes every task, then ends the stream normally
        # (end of stream, OK) while the acknowledgements are still on their way; a later getTask
        # (the dialer re-opens it) pushes nothing, so a task handled twice shows as an extra ack.
        with self.lock:
            first = not self.pushed
            self.pushed = True
        if first:
            for n in range(self.args.tasks):
                yield contact_pb2.ServerMsg(task=f"任务:{n}")
                self.summary.count("tasks_sent")
            return
        while context.is_active() and not self.done.is_set():
            time.sleep(0.05)

    def tellResult(self, request_iterator, context):
        call = []
        try:
            for response in request_iterator:
                if not self.args.quiet:
                    print(f"我已经知道客户端接收到我发过去的任务:{response.ret}")
                call.append(response.ret)
                self.summary.append("acks", response.ret)
                self.check_done()
                if self.args.ack_delay:
                    time.sleep(self.args.ack_delay)
        finally:
            # Each call's acknowledgements: with --end-every-get-task, each call must carry a
            # whole round, in order (a call cut short shows here).
            self.summary.append("calls", (len(call), all(f"任务:{n}" in ack for n, ack in enumerate(call))))
        return contact_pb2.Empty()

    def check_done(self):
        if (len(self.summary.items("acks")) >= self.args.tasks
                and self.summary.counter("status_answered") >= self.args.status):
            self.done.set()


def serve(args):
    summary = Summary("contact_server")
    done = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    contact_pb2_grpc.add_ContactServicer_to_server(ContactServicer(args, summary, done), server)
    port = add_port(server, args, args.address)
    server.start()
    print(f"listening on port {port}", flush=True)
    finished = done.wait(timeout=args.timeout)
    time.sleep(0.5)  # let the last replies leave before stopping
    server.stop(grace=1).wait()
    acks = summary.items("acks")
    # Each acknowledgement must name its own task, in order (they carry no id).
    in_order = all(f"任务:{n}" in ack for n, ack in enumerate(acks))
    if args.end_every_get_task:
        # Every getTask pushes the tasks again: what must hold is that the first tellResult
        # carried every acknowledgement of the first round, in order, and that every sendStatus
        # line was answered once.
        calls = summary.items("calls")
        first_round = len(acks) >= args.tasks and all(f"任务:{n}" in ack for n, ack in enumerate(acks[:args.tasks]))
        in_order = first_round and (not calls or calls[0] == (args.tasks, True))
        ok = finished and in_order and summary.counter("status_answered") == args.status
    else:
        ok = finished and in_order and len(acks) == args.tasks and summary.counter("status_answered") == args.status
    summary.finish(ok, tasks_sent=summary.counter("tasks_sent"), acks=len(acks), acks_in_order=in_order,
                   status_answered=summary.counter("status_answered"), calls=summary.items("calls")[:6])


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--tasks", type=int, default=10, help="tasks to push down getTask")
    parser.add_argument("--status", type=int, default=0, help="sendStatus messages to expect")
    parser.add_argument("--timeout", type=float, default=60, help="seconds before giving up")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--end-get-task", action="store_true",
                        help="end the first getTask normally once every task is pushed; push nothing on later ones")
    parser.add_argument("--ack-delay", type=float, default=0, help="seconds spent on each acknowledgement (a slow reader)")
    parser.add_argument("--end-every-get-task", action="store_true",
                        help="on every getTask, push every task, then end the stream normally")
    add_tls_arguments(parser)
    serve(parser.parse_args())
