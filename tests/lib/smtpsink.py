#!/usr/bin/python3
"""smtpsink.py - a minimal SMTP server for tests: accepts every message and
records it, one JSON file per message, in a directory.

    smtpsink.py --port N --dir DIR [--pidfile F]

Loopback only.  Records: mail_from, rcpt_to, data (the message as received,
dot-unstuffed, CRLF line ends kept), time.  Standard library only (Debian's
/usr/bin/python3), plain asyncio streams.
"""
import argparse
import asyncio
import json
import os
import time

counter = 0


async def handle(reader, writer, outdir):
    global counter

    async def reply(line):
        writer.write((line + "\r\n").encode())
        await writer.drain()

    await reply("220 sink.test ESMTP test sink")
    mail_from, rcpts = None, []
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = line.decode("utf-8", "replace").rstrip("\r\n")
        verb = cmd[:4].upper()
        if verb in ("EHLO", "HELO"):
            await reply("250-sink.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING")
        elif verb == "MAIL":
            mail_from = cmd[cmd.index(":") + 1:].strip().split(" ")[0].strip("<>")
            rcpts = []
            await reply("250 2.1.0 OK")
        elif verb == "RCPT":
            rcpts.append(cmd[cmd.index(":") + 1:].strip().split(" ")[0].strip("<>"))
            await reply("250 2.1.5 OK")
        elif verb == "DATA":
            await reply("354 go ahead")
            data = bytearray()
            while True:
                l = await reader.readline()
                if not l or l in (b".\r\n", b".\n"):
                    break
                if l.startswith(b".."):
                    l = l[1:]
                data += l
            counter += 1
            name = os.path.join(outdir, "msg-%d-%d.json" % (os.getpid(), counter))
            with open(name + ".tmp", "w") as f:
                json.dump({"mail_from": mail_from, "rcpt_to": rcpts,
                           "data": data.decode("utf-8", "replace"),
                           "time": time.time()}, f)
            os.rename(name + ".tmp", name)
            await reply("250 2.0.0 OK queued as sink%d" % counter)
        elif verb == "RSET":
            mail_from, rcpts = None, []
            await reply("250 2.0.0 OK")
        elif verb == "QUIT":
            await reply("221 2.0.0 bye")
            break
        elif verb == "NOOP":
            await reply("250 2.0.0 OK")
        else:
            await reply("502 5.5.2 not implemented")
    writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--pidfile")
    a = ap.parse_args()
    server = await asyncio.start_server(lambda r, w: handle(r, w, a.dir),
                                        "127.0.0.1", a.port)
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
