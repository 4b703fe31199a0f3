#!/usr/bin/env python3
"""Beyond one machine: encode a Parquet catalog into semantic IDs with PySpark.

The recipe, for catalogs too large for one `sidx encode` process:

1. Train once, on a sample. The codebooks need far fewer items than the
   catalog (100k is plenty for 3 x 256): Spark samples `--train-sample` rows,
   collects their embeddings to the driver as a float32 .npy, and `sidx
   quantize` trains the codebooks on it into OUT/quantizer/ (codebooks.npy,
   quantizer.json). With `--codebooks DIR` training is skipped and the given
   codebooks are reused (re-encoding after a catalog refresh, or the same
   codebooks as an earlier run).
2. Encode in parallel. `df.mapInArrow` hands each task its rows as Arrow
   record batches; the task loads `sidx.Quantizer` once (the codebooks are
   shipped with `SparkContext.addFile`, so this works on a cluster too), views
   each batch's embedding column as a float32 [n, D] array without copying
   (the list column's flat values buffer, reshaped), and yields (id string,
   codes list<int32>) batches: the raw quantizer codes, with no
   disambiguation, since items sharing codes may sit in different tasks.
3. Write the SID shards with `.write.parquet(OUT/sids)`: plain Parquet, one
   file per partition, plus Spark's `_SUCCESS` and `.crc` files.
4. Merge: `sidx index build --sids OUT/sids --codebooks
   OUT/quantizer/codebooks.npy --out IDX` reads every shard (skipping
   `_SUCCESS` and `.crc`), takes the layout from the codebooks, and
   disambiguates items that share codes in item-id order, so the index is the
   same whatever the partitioning.

Threads: the encoder releases the GIL and would use every core through rayon
in each Python worker. Spark already runs one worker per task slot, so the
job sets RAYON_NUM_THREADS=1 for the workers (spark.executorEnv): with
`--master local[N]`, N tasks encode at once on N cores, and items/s per core
is comparable with single-process `sidx encode --threads 1`.

Sampling note: the codebooks are trained on Spark's sample, not on the one
`sidx quantize` would draw from the whole catalog with the same --seed, so
they are not byte-identical to a single-machine `sidx quantize` run. Encoding
with given codebooks is deterministic: a task's codes equal `sidx encode`'s.

Usage (scripts/spark-encode.sh sets up .venv-spark and SIDX_BIN):

    python python/sidx_spark.py --make-synthetic 200000,64,8 --embeddings emb/
    python python/sidx_spark.py --embeddings emb/ --out work/ --master 'local[2]'
    sidx index build --sids work/sids --codebooks work/quantizer/codebooks.npy --out idx/

It prints one JSON line of timings: seconds, items, items_per_s, cores,
items_per_s_per_core (of the encode-and-write stage, after a tiny warm-up
stage has started the Python workers: steady state; --no-warm-up to time it
cold), and train_seconds, warm_up_seconds,
schema_seconds (Spark reading the Parquet footers), startup_seconds (the
JVM), total_seconds.

From your own PySpark code: `import sidx_spark` and
`sidx_spark.encode_sids(spark, df, "OUT/quantizer").write.parquet(...)`.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CODEBOOKS_FILE = "codebooks.npy"
META_FILE = "quantizer.json"


# --------------------------------------------------------------------------
# The encoder of one task: Arrow batches in, (id, codes) batches out.
# --------------------------------------------------------------------------


def embedding_matrix(col, dim=None):
    """A float32 [n, D] numpy view of an Arrow list / large_list /
    fixed_size_list column of floats, without copying when the values are
    float32 with no nulls (what Spark and pyarrow write)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    if col.null_count:
        raise ValueError(f"{col.null_count} of {n} embeddings are null")
    if pa.types.is_fixed_size_list(col.type):
        d = col.type.list_size
        start, stop = col.offset * d, (col.offset + n) * d
    elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        offsets = col.offsets.to_numpy()  # n + 1, honours the array's slice offset
        lengths = np.diff(offsets)
        d = int(lengths[0]) if n else (dim or 0)
        if n and not (lengths == d).all():
            bad = int(np.argmax(lengths != d))
            raise ValueError(f"embeddings of different lengths: row 0 has {d}, row {bad} has {lengths[bad]}")
        start, stop = int(offsets[0]), int(offsets[-1])
    else:
        raise TypeError(f"the embedding column is {col.type}, not a list of floats")
    if dim is not None and n and d != dim:
        raise ValueError(f"embeddings have {d} dimensions, the codebooks {dim}")
    values = col.values.slice(start, stop - start)
    if not pa.types.is_floating(values.type):
        raise TypeError(f"the embedding column holds {values.type}, not floats")
    if values.null_count:
        raise ValueError("null values inside embeddings")
    if values.type == pa.float32():
        flat = values.to_numpy(zero_copy_only=True)
    else:  # float64 / float16 catalogs: one conversion
        flat = values.to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(n, d)


CODES_TYPE = pa.list_(pa.field("element", pa.int32()))


def codes_array(codes):
    """[n, L] int32 codes -> a list<int32> Arrow array over the same buffer."""
    n, layers = codes.shape
    offsets = pa.array(np.arange(0, (n + 1) * layers, layers, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(codes.reshape(-1)), type=CODES_TYPE)


def encode_batches(batches, quantizer, embedding_column, id_column):
    """Encodes an iterator of record batches; yields (id, codes) batches."""
    for batch in batches:
        ids = batch.column(id_column)
        if not pa.types.is_string(ids.type):
            ids = ids.cast(pa.string())
        x = embedding_matrix(batch.column(embedding_column), quantizer.dim)
        codes = quantizer.encode(np.ascontiguousarray(x))
        yield pa.RecordBatch.from_arrays([ids, codes_array(codes)], names=["id", "codes"])


def encoder_task(codebooks_name, embedding_column, id_column):
    """The function `mapInArrow` runs once per partition (task)."""

    def run(batches):
        os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before the first encode builds rayon's pool
        import sidx
        from pyspark import SparkFiles

        quantizer = sidx.Quantizer.load(SparkFiles.get(codebooks_name))
        yield from encode_batches(batches, quantizer, embedding_column, id_column)

    return run


# --------------------------------------------------------------------------
# Synthetic catalogs (tests and the bench).
# --------------------------------------------------------------------------


def make_synthetic(out, n, dim, shards, seed=0, clusters=None, id_column="id", embedding_column="embedding"):
    """Writes n clustered float32 embeddings as `shards` Parquet files
    OUT/part-00000.parquet … with columns id (`item-<i>`) and embedding
    list<float32> (named by id_column, embedding_column): long-tailed (Zipf-like) cluster sizes, so that SIDs collide
    in the big clusters. Deterministic in (n, dim, shards, seed)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.parquet"):
        old.unlink()
    rng = np.random.default_rng(seed)
    k = clusters or max(8, int(np.sqrt(n)))
    centers = rng.normal(size=(k, dim)).astype(np.float32)
    weights = 1.0 / np.arange(1, k + 1) ** 0.8
    weights /= weights.sum()
    spread = rng.uniform(0.05, 0.4, size=k).astype(np.float32)
    bounds = np.linspace(0, n, shards + 1).astype(np.int64)
    for s in range(shards):
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        r = np.random.default_rng([seed, s])
        c = r.choice(k, size=hi - lo, p=weights)
        x = centers[c] + r.normal(size=(hi - lo, dim)).astype(np.float32) * spread[c, None]
        emb = pa.ListArray.from_arrays(
            pa.array(np.arange(0, (hi - lo + 1) * dim, dim, dtype=np.int32)), pa.array(x.reshape(-1))
        )
        ids = pa.array([f"item-{i}" for i in range(lo, hi)], type=pa.string())
        pq.write_table(pa.table({id_column: ids, embedding_column: emb}), out / f"part-{s:05d}.parquet", row_group_size=65536)
    return out


# --------------------------------------------------------------------------
# The job.
# --------------------------------------------------------------------------


def sidx_bin(arg):
    path = arg or os.environ.get("SIDX_BIN") or shutil.which("sidx")
    if not path or not (os.path.isfile(path) or shutil.which(path)):
        sys.exit("sidx_spark: no sidx binary: pass --sidx PATH, set SIDX_BIN, or put sidx on PATH")
    return path


def codebooks_files(path):
    """DIR or DIR/codebooks.npy -> (codebooks.npy, quantizer.json or None)."""
    p = pathlib.Path(path).resolve()
    npy = p / CODEBOOKS_FILE if p.is_dir() else p
    if not npy.is_file():
        raise FileNotFoundError(f"no codebooks at {npy} (sidx quantize writes OUT/{CODEBOOKS_FILE})")
    meta = npy.parent / META_FILE
    return npy, meta if meta.is_file() else None


SIDS_SCHEMA = "id string, codes array<int>"


_shipped = {}


def ship_codebooks(spark, codebooks):
    """Ships codebooks.npy (and quantizer.json, which records the beam) to the
    executors with addFile, and this module with addPyFile when it was
    imported rather than run; returns the name tasks find it under. Once per
    session; a session takes one set of codebooks (addFile refuses a second
    codebooks.npy)."""
    npy, meta = codebooks_files(codebooks)
    sc = spark.sparkContext
    key = (id(sc), str(npy))
    if key not in _shipped:
        sc.addFile(str(npy))
        if meta:
            sc.addFile(str(meta))
        if __name__ != "__main__":  # the task's functions are pickled by reference
            sc.addPyFile(os.path.abspath(__file__))
        _shipped[key] = npy.name
    return _shipped[key]


def encode_sids(spark, df, codebooks, embedding_column="embedding", id_column="id"):
    """The SIDs of df's items as a DataFrame (id string, codes array<int>):
    the raw quantizer codes of the codebooks (DIR or DIR/codebooks.npy), one
    mapInArrow task per partition."""
    task = encoder_task(ship_codebooks(spark, codebooks), embedding_column, id_column)
    return df.select(id_column, embedding_column).mapInArrow(task, SIDS_SCHEMA)


def warm_up(spark, codebooks, cores, embedding_column="embedding", id_column="id"):
    """Encodes a few rows in each of `cores` tasks, so that the timed stage
    finds the Python workers started (fork, imports, Quantizer load)."""
    import sidx

    dim = sidx.Quantizer.load(codebooks_files(codebooks)[0]).dim
    n = 64 * cores
    x = np.zeros((n, dim), np.float32)
    emb = pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32)), pa.array(x.reshape(-1)))
    tiny = spark.createDataFrame(pa.table({id_column: [f"w{i}" for i in range(n)], embedding_column: emb}))
    return encode_sids(spark, tiny.repartition(cores), codebooks, embedding_column, id_column).count()


def spark_session(args):
    from pyspark.sql import SparkSession

    if args.master.startswith("local"):
        # Bind to loopback (and skip Spark's "hostname resolves to a loopback
        # address" warning); on a cluster the driver must be reachable.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # The Python workers run this interpreter (the venv with the sidx wheel);
    # PySpark reads the variable, not spark.pyspark.python, in local mode.
    os.environ["PYSPARK_PYTHON"] = os.environ.get("PYSPARK_PYTHON", sys.executable)
    b = (
        SparkSession.builder.master(args.master)
        .appName("sidx-encode")
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch_size))
        .config("spark.executorEnv.RAYON_NUM_THREADS", "1")
    )
    if args.master.startswith("local"):
        b = b.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    if args.max_partition_bytes:
        b = b.config("spark.sql.files.maxPartitionBytes", str(args.max_partition_bytes))
    for kv in args.conf:
        k, _, v = kv.partition("=")
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel(args.spark_log)
    return spark


def train(spark, df, args, sidx, workdir):
    """Samples --train-sample rows to the driver and runs `sidx quantize` on them."""
    total = df.count()
    want = min(args.train_sample, total) if args.train_sample > 0 else total
    sample = df.select(args.embedding_column)
    if want < total:
        # Bernoulli sampling overshoots a little, then limit() trims to `want`.
        frac = min(1.0, want / total * 1.1 + 100 / total)
        sample = sample.sample(withReplacement=False, fraction=frac, seed=args.seed).limit(want)
    x = embedding_matrix(sample.toArrow().column(args.embedding_column))
    qdir = workdir / "quantizer"
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        npy = pathlib.Path(tmp) / "train-sample.npy"
        np.save(npy, np.ascontiguousarray(x))
        cmd = [
            sidx, "--log", "warn", "quantize", "--embeddings", str(npy),
            "--layers", str(args.layers), "--codebook-size", str(args.codebook_size),
            "--train-sample", "0", "--seed", str(args.seed), "--method", args.method,
            "--out", str(qdir),
        ]  # fmt: skip
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit(f"sidx_spark: {' '.join(cmd)} failed:\n{r.stderr}")
    return qdir / CODEBOOKS_FILE, total, len(x)


def count_rows(folder):
    return sum(pq.ParquetFile(f).metadata.num_rows for f in pathlib.Path(folder).glob("*.parquet"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", required=True, help="folder (or file) of Parquet shards of item embeddings")
    p.add_argument("--embedding-column", default="embedding")
    p.add_argument("--id-column", default="id")
    p.add_argument("--out", help="work folder: OUT/quantizer/ (codebooks), OUT/sids/ (SID shards)")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--codebook-size", type=int, default=256)
    p.add_argument("--train-sample", type=int, default=100000, help="rows to train the codebooks on (0 = all)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--method", default="rq-kmeans", help="sidx quantize --method")
    p.add_argument("--codebooks", help="reuse these codebooks (DIR or DIR/codebooks.npy): no training")
    p.add_argument("--sidx", help="the sidx binary (default: $SIDX_BIN, else sidx on PATH)")
    p.add_argument("--batch-size", type=int, default=10000, help="rows per Arrow batch (spark.sql.execution.arrow.maxRecordsPerBatch)")
    p.add_argument("--max-partition-bytes", help="spark.sql.files.maxPartitionBytes (default Spark's 128m)")
    p.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                   help="time the encode stage from cold Python workers (by default a tiny warm-up stage starts them first)")  # fmt: skip
    p.add_argument("--driver-memory", default="2g")
    p.add_argument("--spark-log", default="ERROR", help="Spark's log level")
    p.add_argument("--conf", action="append", default=[], metavar="K=V", help="extra Spark conf (repeatable)")
    p.add_argument("--make-synthetic", metavar="N,D,SHARDS",
                   help="write N synthetic clustered D-dim embeddings as SHARDS Parquet files into --embeddings, then exit")  # fmt: skip
    args = p.parse_args(argv)

    if args.make_synthetic:
        n, d, shards = (int(v) for v in args.make_synthetic.split(","))
        t = time.perf_counter()
        make_synthetic(args.embeddings, n, d, shards, seed=args.seed,
                       id_column=args.id_column, embedding_column=args.embedding_column)  # fmt: skip
        print(json.dumps({"synthetic": args.embeddings, "items": n, "dim": d, "shards": shards,
                          "seconds": round(time.perf_counter() - t, 3)}))  # fmt: skip
        return
    if not args.out:
        p.error("--out is required")
    workdir = pathlib.Path(args.out).resolve()
    try:  # fail before starting a JVM
        sidx = None if args.codebooks else sidx_bin(args.sidx)
        if args.codebooks:
            codebooks_files(args.codebooks)
    except FileNotFoundError as e:
        sys.exit(f"sidx_spark: {e}")
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    spark = spark_session(args)
    try:
        t1 = time.perf_counter()
        src = args.embeddings if "://" in args.embeddings else str(pathlib.Path(args.embeddings).resolve())
        df = spark.read.parquet(src)
        for c in (args.id_column, args.embedding_column):
            if c not in df.columns:
                sys.exit(f"sidx_spark: {args.embeddings} has no column {c!r} (columns: {', '.join(df.columns)})")
        t2 = time.perf_counter()
        train_items = None
        if args.codebooks:
            codebooks = args.codebooks
        else:
            codebooks, _, train_items = train(spark, df, args, sidx, workdir)
        t_train = time.perf_counter()
        cores = spark.sparkContext.defaultParallelism
        if args.warm_up:
            warm_up(spark, codebooks, cores, args.embedding_column, args.id_column)
        t3 = time.perf_counter()
        sids = encode_sids(spark, df, codebooks, args.embedding_column, args.id_column)
        out = workdir / "sids"
        sids.write.mode("overwrite").parquet(str(out))
        t4 = time.perf_counter()
        items = count_rows(out)
        secs = t4 - t3
        print(json.dumps({
            "sids": str(out), "codebooks": str(codebooks_files(codebooks)[0]), "items": items,
            "seconds": round(secs, 3), "items_per_s": round(items / secs), "cores": cores,
            "items_per_s_per_core": round(items / secs / cores),
            "partitions": len(list(out.glob("*.parquet"))), "train_items": train_items,
            "train_seconds": round(t_train - t2, 3), "warm_up_seconds": round(t3 - t_train, 3),
            "schema_seconds": round(t2 - t1, 3),
            "startup_seconds": round(t1 - t0, 3), "total_seconds": round(time.perf_counter() - t0, 3),
            "spark": spark.version,
        }))  # fmt: skip
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
