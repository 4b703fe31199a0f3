"""A catalog update streamed to sidx's IndexService from Python (grpcio), as
an ingestion job would send it — and abandoned the ways such jobs die.

    .venv/bin/python python/sidx_update_client.py --addr HOST:PORT --token T \
        [--count 20] [--interval 0.05] [--cancel-after S | --deadline S]

Streams `--count` SID upserts (items py-0, py-1, …), one every `--interval`
seconds. With --cancel-after the call is cancelled (RST_STREAM CANCEL) after
S seconds; with --deadline it carries a deadline of S seconds. Prints one JSON
object: the final status code and, when the update was applied, its version.
A test may also kill this process mid-stream.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sidx_client import load_stubs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token", required=True, help="the server's admin token")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--cancel-after", type=float)
    ap.add_argument("--deadline", type=float)
    a = ap.parse_args()
    pb, rpc = load_stubs()

    def changes():
        for i in range(a.count):
            sid = pb.Sid(tokens=[pb.Token(layer=1, code=i % 8), pb.Token(layer=2, code=(i // 8) % 8),
                                 pb.Token(layer=3, code=7)])
            yield pb.CatalogChange(upsert_sid=pb.ItemSid(item_id=f"py-{i}", sid=sid))
            print(json.dumps({"sent": i + 1}), file=sys.stderr, flush=True)
            time.sleep(a.interval)

    metadata = [("authorization", f"Bearer {a.token}")]
    with grpc.insecure_channel(a.addr) as channel:
        stub = rpc.IndexServiceStub(channel)
        out = {"code": "OK", "version": 0}
        try:
            if a.cancel_after is not None:
                future = stub.ApplyCatalogUpdate.future(changes(), metadata=metadata)
                time.sleep(a.cancel_after)
                future.cancel()
                out["version"] = future.result().version
            else:
                out["version"] = stub.ApplyCatalogUpdate(changes(), metadata=metadata,
                                                         timeout=a.deadline).version
        except grpc.FutureCancelledError:
            out["code"] = "CANCELLED"
        except grpc.RpcError as e:
            out["code"] = e.code().name
    print(json.dumps(out))


if __name__ == "__main__":
    main()
