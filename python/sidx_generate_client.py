"""How a ranking service calls sidx's GeneratorService from Python (grpcio).

    .venv/bin/python python/sidx_generate_client.py --addr 127.0.0.1:50052 \
        --history ITEM,ITEM,... [--beam 20 --top-k 10]

It checks health, asks for the top-k items constrained by the index and
unconstrained (counting SIDs no item has), sends one bad request, and prints
one JSON object with what came back.
"""

import argparse
import json

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidx_client import load_stubs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", required=True, help="host:port of `sidx serve generator`")
    ap.add_argument("--history", required=True, help="the user's item ids, oldest first, comma-separated")
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=10.0, help="per-call deadline, seconds")
    a = ap.parse_args()
    pb, rpc = load_stubs("generator")
    history = a.history.split(",")

    def sid_text(sid):
        return " ".join(f"{t.layer}:{t.code}" for t in sid.tokens)

    with grpc.insecure_channel(a.addr) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="sidx.v1.GeneratorService"), timeout=a.timeout)
        stub = rpc.GeneratorServiceStub(channel)
        runs = {}
        for constrained in (True, False):
            r = stub.Generate(pb.GenerateRequest(history_item_ids=history, beam_width=a.beam, top_k=a.top_k,
                                                 constrained=constrained), timeout=a.timeout)
            runs["constrained" if constrained else "unconstrained"] = {
                "items": [{"item_id": i.item_id, "sid": sid_text(i.sid), "score": i.score} for i in r.items],
                "invalid_sids": r.invalid_sids,
                "index_version": r.index_version,
            }
        try:
            stub.Generate(pb.GenerateRequest(history_item_ids=["no-such-item"]), timeout=a.timeout)
            bad = "accepted"
        except grpc.RpcError as e:
            bad = f"{e.code().name}: {e.details()}"

    print(json.dumps({
        "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
        **runs,
        "bad_request": bad,
    }))


if __name__ == "__main__":
    main()
