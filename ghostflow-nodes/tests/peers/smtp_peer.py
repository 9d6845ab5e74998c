"""A real SMTP server for the email tests (aiosmtpd).

Binds 127.0.0.1 on a free port, prints the port on the first line of
standard output, and records every message it accepts as a JSON file in
the --out directory (`1.json`, `2.json`, ...): the envelope (MAIL FROM,
RCPT TO), the raw data, whether the session was encrypted and who logged
in. Modes: `none` (plain), `starttls` (offers STARTTLS) and `tls` (implicit
TLS from the first byte), the last two with --cert and --key.

AUTH PLAIN and LOGIN accept --user with --password only. Recipients whose
address starts with `reject` are refused with 550, those starting with
`later` with 451, as real servers refuse unknown and deferred mailboxes.

Install aiosmtpd with `bash .ci/services.sh`. The process runs until it is
killed.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Recorder:
    def __init__(self, out):
        self.out = out
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.startswith("later"):
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        login = getattr(session, "ghostflow_login", None)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
            # STARTTLS sets `session.ssl`; implicit TLS shows on the transport.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "login": login,
        }
        path = os.path.join(self.out, f"{self.count}.json")
        # Written whole, then renamed: the test never reads half a file.
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
        return f"250 2.0.0 Ok: queued as {self.count}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["none", "starttls", "tls"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--out", required=True)
    parser.add_argument("--user", default="robot")
    parser.add_argument("--password", default="s3cret")
    args = parser.parse_args()

    context = None
    if args.mode != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        if ok:
            session.ghostflow_login = args.user
        return AuthResult(success=ok, handled=False)

    recorder = Recorder(args.out)

    def protocol():
        return SMTP(
            recorder,
            hostname="smtp-peer.test",
            tls_context=context if args.mode == "starttls" else None,
            require_starttls=args.mode == "starttls",
            authenticator=authenticate,
            auth_required=False,
            # Plain mode still offers AUTH, for the local-relay case.
            auth_require_tls=False,
            decode_data=False,
        )

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            protocol,
            host="127.0.0.1",
            port=0,
            ssl=context if args.mode == "tls" else None,
        )
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
