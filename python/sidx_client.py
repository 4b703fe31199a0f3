"""How a ranking service calls sidx's IndexService from Python (grpcio).

Stubs are generated from ../proto at start-up (grpcio-tools), so the client
always matches the server's API. Usage:

    .venv/bin/python python/sidx_client.py --addr 127.0.0.1:50051 --item ITEM_ID

It checks health, reads Stats, asks which tokens may follow the root and the
item's SID prefixes (batched, by token ids — the fast path), looks the item up
both ways, and prints one JSON object with what it learned.
"""

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"


def load_stubs(service="index"):
    """Compiles proto/sidx/v1/*.proto into a temporary package and imports
    the messages and stubs of `service` (index or generator)."""
    out = Path(tempfile.mkdtemp(prefix="sidx-stubs-"))
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p) for p in sorted((PROTO_ROOT / "sidx" / "v1").glob("*.proto"))]
    rc = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", *files])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc}) on {files}")
    for d in (out / "sidx", out / "sidx" / "v1"):
        (d / "__init__.py").touch()
    sys.path.insert(0, str(out))
    return (importlib.import_module(f"sidx.v1.{service}_pb2"),
            importlib.import_module(f"sidx.v1.{service}_pb2_grpc"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", required=True, help="host:port of `sidx serve index`")
    ap.add_argument("--item", required=True, help="an item id to look up")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-call deadline, seconds")
    a = ap.parse_args()
    pb, rpc = load_stubs()

    with grpc.insecure_channel(a.addr) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="sidx.v1.IndexService"), timeout=a.timeout)
        stub = rpc.IndexServiceStub(channel)
        stats = stub.Stats(pb.StatsRequest(), timeout=a.timeout)

        # Item -> SID, then SID -> items.
        found = stub.Lookup(pb.LookupRequest(item_ids=[a.item]), timeout=a.timeout).by_item[0]
        sid = found.sid
        back = stub.Lookup(pb.LookupRequest(sids=[sid]), timeout=a.timeout).by_sid[0]

        # Layer-tagged token ids: offset(layer) + code, offsets = running sums of codebook sizes.
        offsets = [0]
        for m in stats.codebook_sizes:
            offsets.append(offsets[-1] + m)
        ids = [offsets[t.layer - 1] + t.code for t in sid.tokens]
        prefixes = [pb.TokenIds(ids=ids[:k]) for k in range(len(ids) + 1)]
        nxt = stub.NextTokens(pb.NextTokensRequest(prefix_ids=prefixes), timeout=a.timeout)

        # A malformed request is a clean INVALID_ARGUMENT naming the field.
        try:
            stub.NextTokens(pb.NextTokensRequest(prefixes=[pb.Sid(tokens=[pb.Token(layer=99, code=0)])]),
                            timeout=a.timeout)
            bad = "accepted"
        except grpc.RpcError as e:
            bad = f"{e.code().name}: {e.details()}"

    print(json.dumps({
        "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
        "version": stats.version,
        "items": stats.items,
        "layers": [{"layer": l.layer, "gini": round(l.gini, 4), "normalized_entropy": round(l.normalized_entropy, 4)}
                   for l in stats.layers],
        "item": a.item,
        "sid": " ".join(f"{t.layer}:{t.code}" for t in sid.tokens),
        "items_with_sid": list(back.item_ids),
        "allowed_counts": [len(r.allowed_ids) for r in nxt.results],
        "complete": [r.complete for r in nxt.results],
        "bad_request": bad,
    }))


if __name__ == "__main__":
    main()
