"""The article's client (contact_client.py), as close to the article as runs.

Changes from the article, and why:
- flags for the address, mutual TLS or plaintext, how many tasks to take, how many status
  messages to send, and a quiet mode; it exits once it has seen what it should, with a one-line
  summary, 0 only when every task arrived and every status message was answered;
- `print(ret.result)` read a field the `Result` message does not have: it reads `ret`;
- the article retries forever; this one runs the same calls once.

The three calls are the article's: `sendStatus` from a thread with a generator of
`ClientMsg(msg=f"数据:{num}")`, and `tellResult` fed by a generator that iterates `getTask`
and acknowledges each task with `Result(ret=f"客户端接收到任务:{task.task}")`.
"""
import argparse
import random
import sys
import threading
import time

import grpc
from contact import contact_pb2
from contact import contact_pb2_grpc

from interop_common import add_tls_arguments, make_channel, Summary


# 先制造一些客户端能发送的数据
def make_some_data(count):
    for i in range(count):
        num = random.randint(1, 20)
        yield contact_pb2.ClientMsg(msg=f"数据:{num}")


def send_status(stub, count, summary, quiet):
    try:
        status_response = stub.sendStatus(make_some_data(count))
        for ret in status_response:
            summary.count("status_replies")
            if not quiet:
                print(ret.ret)
    except Exception as e:
        summary.error(f'err in send_status:{e}')
        return


# 接收服务端发送过来的任务
def get_task(stub, tasks, summary, quiet):
    try:
        for task in stub.getTask(contact_pb2.Empty()):
            if not quiet:
                print(f"客户端已接收到服务端任务:{task.task}\n")
            summary.append("tasks", task.task)
            # 顺便再告诉服务端我已经接收到你发的任务,你不用担心我没接收到它
            yield contact_pb2.Result(
                ret=f"客户端接收到任务:{task.task}"
            )
            if len(summary.items("tasks")) >= tasks:
                return
    except Exception as e:
        summary.error(f'err:{e}')
        return


# 客户端再通知服务端我接收到你的消息了
def tell_result(stub, tasks, summary, quiet):
    result = get_task(stub, tasks, summary, quiet)
    stub.tellResult(result)


def run(args):
    summary = Summary("contact_client")
    with make_channel(args) as channel:
        stub = contact_pb2_grpc.ContactStub(channel)
        try:
            status = threading.Thread(
                target=send_status, args=(stub, args.status, summary, args.quiet), daemon=True
            )
            status.start()
            tell_result(stub, args.tasks, summary, args.quiet)
            status.join(timeout=args.timeout)
        except grpc.RpcError as e:
            summary.error(f"server connected out, please retry:{e.code()},{e.details()}")
        except Exception as e:
            summary.error(f'unknown err:{e}')
    tasks = summary.items("tasks")
    ok = (
        not summary.errors
        and len(tasks) == args.tasks
        and summary.counter("status_replies") == args.status
    )
    summary.finish(ok, tasks=len(tasks), status_replies=summary.counter("status_replies"))


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="localhost:50051")
    parser.add_argument("--tasks", type=int, default=10, help="tasks to take from getTask, then stop")
    parser.add_argument("--status", type=int, default=15, help="messages to send on sendStatus")
    parser.add_argument("--timeout", type=float, default=60, help="seconds before giving up")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    add_tls_arguments(parser)
    run(parser.parse_args())
