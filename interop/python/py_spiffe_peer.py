"""Drives Spinel's Workload API with py-spiffe (PyPI `spiffe`, over gRPC
C-core) and prints what it got as JSON lines, for the e2e interop tests.

    py_spiffe_peer.py SOCKET snippet
    py_spiffe_peer.py SOCKET x509-context
    py_spiffe_peer.py SOCKET jwt AUDIENCE
    py_spiffe_peer.py SOCKET bundles
    py_spiffe_peer.py SOCKET watch SERIALS TIMEOUT_SECONDS
    py_spiffe_peer.py SOCKET denied
    py_spiffe_peer.py SOCKET no-header

SOCKET is the agent's socket path. Errors of the Workload API are printed
as {"error": ..., "code": <gRPC status name>} and exit 0: the test decides
whether an error was expected. Anything else exits non-zero.
"""

import json
import sys
import threading

import grpc
from spiffe import JwtSource, JwtSvid, TrustDomain, WorkloadApiClient, X509Source


def emit(value):
    print(json.dumps(value, sort_keys=True), flush=True)


def status_of(err):
    """The gRPC status name behind a py-spiffe error (or None)."""
    cause = err
    while cause is not None:
        if isinstance(cause, grpc.Call):
            return cause.code().name
        cause = cause.__cause__
    return None


def serial(svid):
    return format(svid.leaf.serial_number, "x")


def snippet(socket):
    # The snippet, verbatim apart from the socket path: no option
    # changed on the client.
    svid = WorkloadApiClient("unix://" + socket).fetch_x509_svid()
    emit({"spiffe_id": str(svid.spiffe_id), "chain_len": len(svid.cert_chain)})


def x509_context(socket):
    with WorkloadApiClient("unix://" + socket) as client:
        ctx = client.fetch_x509_context()
        bundles = client.fetch_x509_bundles()
    with X509Source(socket_path="unix://" + socket, timeout_in_seconds=30) as source:
        default_id = str(source.svid.spiffe_id)
    emit(
        {
            "svids": sorted(str(s.spiffe_id) for s in ctx.x509_svids),
            "default_svid": str(ctx.default_svid.spiffe_id),
            "chain_lens": [len(s.cert_chain) for s in ctx.x509_svids],
            "context_trust_domains": sorted(b.trust_domain.name for b in ctx.x509_bundle_set.bundles),
            "bundle_trust_domains": sorted(b.trust_domain.name for b in bundles.bundles),
            "authorities": sum(len(b.x509_authorities) for b in bundles.bundles),
            "source_svid": default_id,
        }
    )


def jwt(socket, audience):
    with WorkloadApiClient("unix://" + socket) as client:
        svid = client.fetch_jwt_svid({audience})
        validated = client.validate_jwt_svid(svid.token, audience)
        try:
            client.validate_jwt_svid(svid.token, audience + "-other")
            wrong = None
        except Exception as err:  # the test checks the code
            wrong = status_of(err) or str(err)
    with JwtSource(socket_path="unix://" + socket, timeout_in_seconds=30) as source:
        td = TrustDomain(svid.spiffe_id.trust_domain.name)
        bundle = source.get_bundle_for_trust_domain(td)
        local = JwtSvid.parse_and_validate(svid.token, bundle, {audience})
    emit(
        {
            "spiffe_id": str(svid.spiffe_id),
            "audience": sorted(svid.audience),
            "agent_valid_id": str(validated.spiffe_id),
            "local_valid_id": str(local.spiffe_id),
            "wrong_audience": wrong,
        }
    )


def bundles(socket):
    with WorkloadApiClient("unix://" + socket) as client:
        x509 = client.fetch_x509_bundles()
        jwt_bundles = client.fetch_jwt_bundles()
    emit(
        {
            "x509": sorted(b.trust_domain.name for b in x509.bundles),
            "jwt": sorted(b.trust_domain.name for b in jwt_bundles.bundles),
            "jwt_keys": sum(len(b.jwt_authorities) for b in jwt_bundles.bundles),
        }
    )


def watch(socket, wanted, timeout):
    """Streams X509 contexts until `wanted` distinct leaf serials were seen."""
    seen = []
    done = threading.Event()
    failure = []

    def on_success(ctx):
        s = serial(ctx.default_svid)
        if s not in seen:
            seen.append(s)
            emit({"update": len(seen), "serial": s, "spiffe_id": str(ctx.default_svid.spiffe_id)})
        if len(seen) >= wanted:
            done.set()

    def on_error(err):
        failure.append(str(err))
        done.set()

    client = WorkloadApiClient("unix://" + socket)
    handler = client.stream_x509_contexts(on_success, on_error, retry_connect=False)
    done.wait(timeout)
    handler.cancel()
    client.close()
    emit({"serials": seen, "error": failure[0] if failure else None})


def denied(socket):
    try:
        WorkloadApiClient("unix://" + socket).fetch_x509_svid()
        emit({"error": None, "code": None})
    except Exception as err:
        emit({"error": str(err), "code": status_of(err)})


def no_header(socket):
    """A raw grpcio call without the security header (py-spiffe always
    sends it): the agent must answer InvalidArgument."""
    channel = grpc.insecure_channel("unix:" + socket)
    call = channel.unary_stream(
        "/SpiffeWorkloadAPI/FetchX509SVID",
        request_serializer=lambda _: b"",
        response_deserializer=lambda raw: raw,
    )
    try:
        for _ in call(None, timeout=30):
            break
        emit({"error": None, "code": "OK"})
    except grpc.RpcError as err:
        emit({"error": err.details(), "code": err.code().name})
    finally:
        channel.close()


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    socket, command, args = argv[1], argv[2], argv[3:]
    if command == "snippet":
        snippet(socket)
    elif command == "x509-context":
        x509_context(socket)
    elif command == "jwt":
        jwt(socket, args[0])
    elif command == "bundles":
        bundles(socket)
    elif command == "watch":
        watch(socket, int(args[0]), float(args[1]))
    elif command == "denied":
        denied(socket)
    elif command == "no-header":
        no_header(socket)
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main(sys.argv)
