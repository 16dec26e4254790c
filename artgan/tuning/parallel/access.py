"""Who may talk to the chief: a shared secret (token) in every gRPC call's metadata.

A chief started without a token writes a new one to <output>/oracle.token (mode 0600); workers
read it from a token file, $ARTGAN_ORACLE_TOKEN or $ARTGAN_ORACLE_TOKEN_FILE. A chief
listening beyond loopback without a token is refused.
"""

import hmac
import ipaddress
import logging
import os
import secrets
from pathlib import Path

import grpc

from artgan.errors import ArtganError

log = logging.getLogger(__name__)

TOKEN_ENV = "ARTGAN_ORACLE_TOKEN"
TOKEN_FILE_ENV = "ARTGAN_ORACLE_TOKEN_FILE"
TOKEN_FILE = "oracle.token"  # in the output folder, written by a chief started without one
TOKEN_HEADER = "artgan-oracle-token"


def new_token():
    return secrets.token_urlsafe(32)


def read_token_file(path):
    path = Path(path).expanduser()
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise ArtganError(f"token file {path}: cannot be read ({error.strerror})") from None
    if not token:
        raise ArtganError(f"token file {path} is empty")
    return token


def given_token(token_file=None):
    """The token given to this process: `token_file`, else $ARTGAN_ORACLE_TOKEN, else the file
    named by $ARTGAN_ORACLE_TOKEN_FILE; None if none (an empty variable counts as none)."""
    if token_file:
        return read_token_file(token_file)
    if os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip()
    if os.environ.get(TOKEN_FILE_ENV, "").strip():
        return read_token_file(os.environ[TOKEN_FILE_ENV].strip())
    return None


def write_token(output, token):
    """<output>/oracle.token, readable by its owner only."""
    path = Path(output) / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def chief_token(output, token_file=None):
    """(token, note) for a chief: the one given, else the one a previous chief wrote to
    <output>/oracle.token, else a new one written there (note says so, for the user)."""
    token = given_token(token_file)
    if token:
        return token, None
    path = Path(output) / TOKEN_FILE
    if path.is_file():
        return read_token_file(path), f"using the token in {path}"
    token = new_token()
    write_token(output, token)
    return token, (
        f"no token given: wrote a new one to {path} (mode 0600); give it to the "
        f"workers with `token_file` or {TOKEN_ENV}"
    )


def worker_token(output, token_file=None):
    token = given_token(token_file)
    if token:
        return token
    path = Path(output) / TOKEN_FILE
    if path.is_file():
        return read_token_file(path)
    raise ArtganError(
        f"no token for the chief: give `token_file`, or set {TOKEN_ENV} or {TOKEN_FILE_ENV} "
        f"(a chief started by hand writes its token to <output>/{TOKEN_FILE})"
    )


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_chief_access(host, token):
    if not token and not is_loopback(host):
        raise ArtganError(
            f"refusing to serve the oracle on {host} without a token: anyone who reaches the "
            f"port could take trials and report made-up scores. Set {TOKEN_ENV}, or give "
            "`token_file`, or listen on 127.0.0.1"
        )


def server_interceptor(token, say=log.warning):
    """A gRPC server interceptor that refuses every call without `token` (and `say`s so)."""
    expected = token.encode()
    refused = {"count": 0}

    def refuse(request, context):
        refused["count"] += 1
        if refused["count"] <= 10 or refused["count"] % 100 == 0:
            say(
                f"chief: refused an unauthenticated call from {context.peer()} "
                f"({refused['count']} so far)"
            )
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "artgan: missing or wrong oracle token")

    deny = grpc.unary_unary_rpc_method_handler(refuse)

    class Interceptor(grpc.ServerInterceptor):
        def intercept_service(self, continuation, handler_call_details):
            sent = dict(handler_call_details.invocation_metadata or ()).get(TOKEN_HEADER, "")
            if isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected):
                return continuation(handler_call_details)
            return deny

    return Interceptor()
