#!/usr/bin/env python3
"""A real SMTP server for tests (PyPI `aiosmtpd`) that stores what it receives.

Used by tests/api/email.rs; also handy by hand, to see what `ivr` sends:

    python3 scripts/smtp-sink.py --port 2525 /tmp/mail

Every accepted message is written to DIR as NNNN-<random>.eml, exactly as received, preceded
by the envelope as a delivering MTA records it: `Return-Path: <MAIL FROM>` and one
`Delivered-To: RCPT TO` per recipient. Files appear whole (written under a temporary name,
then renamed), so a reader never sees half a message.

Recipients in two domains are refused at RCPT TO, so that clients can test how they sort
failures:
  - anything@reject.test (--reject-domain): 550 5.1.1 mailbox unavailable (permanent)
  - anything@defer.test  (--defer-domain):  451 4.3.0 try again later (transient)

The server answers on 127.0.0.1 and stops on SIGTERM or SIGINT, and, with --exit-on-stdin-eof,
when its standard input closes: a test that dies without cleaning up then leaves no server
behind.
"""

import argparse
import asyncio
import itertools
import os
import secrets
import signal
import sys
import threading

from aiosmtpd.smtp import SMTP


class Sink:
    """aiosmtpd handler: refuses the test domains, stores everything else."""

    def __init__(self, directory, reject_domain, defer_domain):
        self.directory = directory
        self.reject_domain = reject_domain.lower()
        self.defer_domain = defer_domain.lower()
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rpartition("@")[2].lower()
        if domain == self.reject_domain:
            return "550 5.1.1 Mailbox unavailable"
        if domain == self.defer_domain:
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        name = f"{next(self.counter):04d}-{secrets.token_hex(4)}"
        trace = f"Return-Path: <{envelope.mail_from}>\r\n"
        trace += "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos)
        # original_content: the bytes as the client sent them (dot-unstuffed), not re-encoded.
        data = trace.encode("ascii", "surrogateescape") + envelope.original_content
        temporary = os.path.join(self.directory, f".{name}.tmp")
        with open(temporary, "wb") as f:
            f.write(data)
        os.rename(temporary, os.path.join(self.directory, f"{name}.eml"))
        return f"250 2.0.0 OK queued as {name}"


async def serve(args):
    loop = asyncio.get_running_loop()
    handler = Sink(args.directory, args.reject_domain, args.defer_domain)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.test", loop=loop), host=args.host, port=args.port
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.exit_on_stdin_eof:
        # A thread, because reading a pipe from the event loop differs between platforms.
        def watch():
            sys.stdin.buffer.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch, daemon=True).start()
    print(f"smtp-sink: listening on {args.host}:{args.port}, storing in {args.directory}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="where .eml files are written (must exist)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--reject-domain", default="reject.test", help="recipients answered 550")
    parser.add_argument("--defer-domain", default="defer.test", help="recipients answered 451")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args()
    if not os.path.isdir(args.directory):
        parser.error(f"not a directory: {args.directory}")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
