//! The index service over real gRPC on 127.0.0.1: every RPC through the
//! generated client, health transitions, auth refusals, bad and oversized
//! requests, load shedding, hot swaps under queries, and graceful shutdown.

mod common;

use common::{health, wait_for_health};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sidx::index::{IndexStore, build_from_table};
use sidx::pipeline::QuantizeJob;
use sidx::progress::Progress;
use sidx::proto::v1::index_service_client::IndexServiceClient;
use sidx::proto::v1::*;
use sidx::quantize::TrainConfig;
use sidx::server::{RunningServer, ServerConfig, start_index_server};
use sidx::sid::{CollisionMode, SidTable};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

const TOKEN: &str = "test-admin-token-0123456789";

/// Quantizes a small synthetic catalog; returns its SID table (codebooks in `dir`).
fn catalog(dir: &Path) -> SidTable {
    let cfg = sidx::synth::SynthConfig {
        items: 1500,
        dim: 16,
        clusters: 40,
        ..Default::default()
    };
    let emb = dir.join("emb.npy");
    sidx::npy::write(&emb, &[cfg.items, cfg.dim], &sidx::synth::generate(&cfg)).unwrap();
    let job = QuantizeJob {
        embeddings: emb,
        ids: None,
        columns: Default::default(),
        train: TrainConfig {
            layers: 3,
            codebook_size: 16,
            train_sample: None,
            kmeans_iters: 10,
            ..TrainConfig::default()
        },
        beam: 1,
        collisions: CollisionMode::Disambiguate,
        head_share: 0.5,
        out: dir.join("q"),
    };
    job.run(&Progress::hidden()).unwrap().table
}

fn config() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_token: Some(TOKEN.into()),
        max_batch: 300,
        max_request_bytes: 64 * 1024,
        reload_interval_ms: 50,
        drain_timeout_s: 1,
        ..ServerConfig::default()
    }
}

async fn start(root: &Path, config: ServerConfig) -> RunningServer {
    start_index_server(IndexStore::new(root), config, std::future::pending())
        .await
        .unwrap()
}

async fn client(server: &RunningServer) -> IndexServiceClient<Channel> {
    IndexServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap()
}

/// A server on a freshly built index of `catalog`, healthy, and a client.
async fn serving(
    config: ServerConfig,
) -> (
    tempfile::TempDir,
    SidTable,
    RunningServer,
    IndexServiceClient<Channel>,
) {
    let dir = tempfile::tempdir().unwrap();
    let table = catalog(dir.path());
    let root = dir.path().join("index");
    build_from_table(&IndexStore::new(&root), &table, "test", None).unwrap();
    let server = start(&root, config).await;
    wait_for_health(&server, ServingStatus::Serving).await;
    let c = client(&server).await;
    (dir, table, server, c)
}

fn admin<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

fn tok(layer: u32, code: u32) -> Token {
    Token { layer, code }
}

fn sid_of(table: &SidTable, i: usize) -> Sid {
    Sid {
        tokens: table
            .sid(i)
            .iter()
            .map(|t| tok(t.layer as u32, t.code))
            .collect(),
    }
}

/// Item `i`'s quantizer tokens (its SID without a disambiguation token): an
/// upsert of these collides with item `i` and is disambiguated.
fn base_sid_of(table: &SidTable, i: usize) -> Sid {
    let dis = table.layout().disambiguation_layer() as u32;
    let mut sid = sid_of(table, i);
    sid.tokens.retain(|t| t.layer != dis);
    sid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let table = catalog(dir.path());
    let root = dir.path().join("index");
    let store = IndexStore::new(&root);
    build_from_table(
        &store,
        &table,
        "test",
        Some(&dir.path().join("q/codebooks.npy")),
    )
    .unwrap();
    let server = start(&root, config()).await;
    wait_for_health(&server, ServingStatus::Serving).await;
    assert_eq!(
        health(&server, "sidx.v1.IndexService").await,
        ServingStatus::Serving as i32
    );
    let mut c = client(&server).await;
    let local = store.open_current().unwrap();

    // NextTokens, by tokens and by ids, equal the in-process index.
    let prefixes = vec![
        Sid::default(),
        Sid {
            tokens: sid_of(&table, 0).tokens[..1].to_vec(),
        },
        sid_of(&table, 1),
    ];
    let r = c
        .next_tokens(NextTokensRequest {
            prefixes: prefixes.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.version, 1);
    assert_eq!(r.results.len(), 3);
    let root_next = local.next_tokens(&[]);
    assert_eq!(r.results[0].allowed.len(), root_next.allowed.len());
    assert!(r.results[0].valid && !r.results[0].complete);
    assert!(r.results[2].complete, "a full SID is complete");
    let mut ids = Vec::new();
    local.token_ids(&table.sid(0)[..1], &mut ids).unwrap();
    let r2 = c
        .next_tokens(NextTokensRequest {
            prefix_ids: vec![TokenIds {
                ids: ids.iter().map(|&t| t as u32).collect(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let want: Vec<u32> = local
        .next_tokens(&ids)
        .allowed
        .iter()
        .map(|&t| t as u32)
        .collect();
    assert_eq!(r2.results[0].allowed_ids, want);
    assert_eq!(r.results[1].allowed.len(), want.len());

    // The packed form answers a batch alike in either spelling: a prefix no
    // SID starts with included.
    let t0 = table.sid(0)[0];
    let ids_of = |tokens: &[sidx::sid::Token]| {
        let mut ids = Vec::new();
        local.token_ids(tokens, &mut ids).unwrap();
        ids
    };
    let absent = (0..16)
        .map(|code| [t0, sidx::sid::Token::new(2, code)])
        .find(|p| local.next_tokens(&ids_of(p)).node.is_none())
        .expect("a layer-2 code absent under item 0's first token");
    let mut batch: Vec<Vec<sidx::sid::Token>> =
        vec![vec![], table.sid(0)[..1].to_vec(), table.sid(1).to_vec()];
    batch.push(absent.to_vec());
    let batch_ids: Vec<Vec<u16>> = batch.iter().map(|p| ids_of(p)).collect();
    for by_ids in [false, true] {
        let req = if by_ids {
            NextTokensRequest {
                prefix_ids: batch_ids
                    .iter()
                    .map(|p| TokenIds {
                        ids: p.iter().map(|&t| t as u32).collect(),
                    })
                    .collect(),
                packed: true,
                ..Default::default()
            }
        } else {
            NextTokensRequest {
                prefixes: batch
                    .iter()
                    .map(|p| Sid {
                        tokens: p
                            .iter()
                            .map(|t| Token {
                                layer: t.layer as u32,
                                code: t.code,
                            })
                            .collect(),
                    })
                    .collect(),
                packed: true,
                ..Default::default()
            }
        };
        let r = c.next_tokens(req).await.unwrap().into_inner();
        assert!(r.results.is_empty(), "packed answers only");
        let p = r.packed.expect("packed answers");
        assert_eq!(p.counts.len(), batch.len());
        let mut ids = p
            .allowed_ids
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]));
        assert_eq!(
            p.allowed_ids.len(),
            2 * p.counts.iter().sum::<u32>() as usize
        );
        for (i, prefix) in batch_ids.iter().enumerate() {
            let want = local.next_tokens(prefix);
            let got: Vec<u16> = ids.by_ref().take(p.counts[i] as usize).collect();
            assert_eq!(got, want.allowed, "prefix {i}");
            assert_eq!(
                bit_set(&p.complete, i),
                want.complete,
                "prefix {i} complete"
            );
            assert_eq!(
                bit_set(&p.valid, i),
                want.node.is_some(),
                "prefix {i} valid"
            );
        }
        assert!(bit_set(&p.complete, 2) && !bit_set(&p.valid, 3));
    }

    // Lookup both ways.
    let r = c
        .lookup(LookupRequest {
            sids: vec![sid_of(&table, 5)],
            item_ids: vec![table.id(7).into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.by_sid[0].item_ids.contains(&table.id(5).to_string()));
    assert_eq!(r.by_item[0].sid, Some(sid_of(&table, 7)));

    // Stats and versions.
    let s = c.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!((s.version, s.items, s.layers.len()), (1, 1500, 3));
    assert!(s.layers[0].entropy > 0.0);
    let v = c
        .list_versions(ListVersionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.versions.len(), 1);
    assert!(v.versions[0].current);

    let mut watch = c
        .watch_versions(WatchVersionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().version, 1);

    // Admin RPCs need the token.
    let change = |c: catalog_change::Change| CatalogChange { change: Some(c) };
    let changes = vec![
        change(catalog_change::Change::UpsertEmbedding(UpsertEmbedding {
            item_id: "new-emb".into(),
            embedding: vec![0.25; 16],
        })),
        change(catalog_change::Change::UpsertSid(ItemSid {
            item_id: "new-sid".into(),
            sid: Some(base_sid_of(&table, 3)),
        })),
        change(catalog_change::Change::DeleteItemId(table.id(9).into())),
    ];
    let e = c
        .apply_catalog_update(tokio_stream::iter(changes.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let mut wrong = tonic::Request::new(tokio_stream::iter(changes.clone()));
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(
        c.apply_catalog_update(wrong).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        c.rollback(RollbackRequest { version: 1 })
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    let u = c
        .apply_catalog_update(admin(tokio_stream::iter(changes)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (u.version, u.previous_version, u.added, u.deleted),
        (2, 1, 2, 1)
    );
    assert_eq!(u.items, 1501);
    assert_eq!(
        watch.message().await.unwrap().unwrap().version,
        2,
        "watchers learn of the swap"
    );
    let r = c
        .lookup(LookupRequest {
            item_ids: vec!["new-emb".into(), "new-sid".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.version, 2);
    let dis = r.by_item[1].sid.as_ref().unwrap();
    assert_eq!(
        dis.tokens[..3],
        sid_of(&table, 3).tokens[..3],
        "re-used SID kept its quantizer tokens"
    );
    // Lookup answers per entry: an unknown (here: deleted) item has no SID,
    // and the known ones in the same batch are still answered.
    let r = c
        .lookup(LookupRequest {
            item_ids: vec![table.id(9).into(), table.id(4).into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.by_item[0].item_id, table.id(9));
    assert_eq!(r.by_item[0].sid, None, "deleted item: sid unset");
    assert_eq!(r.by_item[1].sid, Some(sid_of(&table, 4)));

    // FetchVersion mirrors a version that opens and verifies elsewhere.
    let mut files = c
        .fetch_version(FetchVersionRequest { version: 0 })
        .await
        .unwrap()
        .into_inner();
    let mirror = dir.path().join("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    let mut last = false;
    while let Some(chunk) = files.message().await.unwrap() {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(mirror.join(&chunk.name))
            .unwrap();
        assert_eq!(f.metadata().unwrap().len(), chunk.offset);
        f.write_all(&chunk.data).unwrap();
        last = chunk.last;
    }
    assert!(last);
    let mirrored = sidx::index::Index::open(&mirror).unwrap();
    assert_eq!((mirrored.version(), mirrored.item_count()), (2, 1501));

    // Rollback and Rebuild.
    let rb = c
        .rollback(admin(RollbackRequest { version: 1 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rb.version, 1);
    assert_eq!(
        c.stats(StatsRequest {}).await.unwrap().into_inner().version,
        1
    );
    let sids_path = dir.path().join("q/sids.tsv");
    let rebuilt = c
        .rebuild(admin(RebuildRequest {
            sids_path: sids_path.to_str().unwrap().into(),
            codebooks_path: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rebuilt.version, 3);
    assert_eq!(
        c.rollback(admin(RollbackRequest { version: 99 }))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // Metrics.
    let text = common::http_get(server.metrics_addr.unwrap(), "/metrics").await;
    assert!(
        text.contains("sidx_grpc_requests_total{method=\"NextTokens\",code=\"OK\"} 4"),
        "{text}"
    );
    assert!(text.contains("code=\"UNAUTHENTICATED\""));
    assert!(text.contains("sidx_index_version 3"));
    assert!(text.contains("sidx_grpc_request_seconds_bucket{method=\"Lookup\""));

    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_keep_the_connection() {
    let (_dir, _table, server, mut c) = serving(config()).await;
    let ask = |prefixes: Vec<Sid>| NextTokensRequest {
        prefixes,
        ..Default::default()
    };
    let cases: Vec<(NextTokensRequest, Code, &str)> = vec![
        (
            NextTokensRequest::default(),
            Code::InvalidArgument,
            "empty batch",
        ),
        (
            ask(vec![Sid {
                tokens: vec![tok(9, 0)],
            }]),
            Code::InvalidArgument,
            "prefixes[0]",
        ),
        (
            ask(vec![
                Sid::default(),
                Sid {
                    tokens: vec![tok(2, 1), tok(1, 1)],
                },
            ]),
            Code::InvalidArgument,
            "prefixes[1]",
        ),
        (
            ask(vec![Sid {
                tokens: vec![tok(1, 99)],
            }]),
            Code::InvalidArgument,
            "out of range",
        ),
        (
            ask(vec![Sid {
                tokens: vec![tok(1, 0), tok(2, 0), tok(3, 0), tok(4, 0), tok(5, 0)],
            }]),
            Code::InvalidArgument,
            "layer must be",
        ),
        (
            NextTokensRequest {
                prefix_ids: vec![TokenIds {
                    ids: vec![1, 17, 33, 49, 50],
                }],
                ..Default::default()
            },
            Code::InvalidArgument,
            "longer than any SID",
        ),
        (
            ask(vec![Sid::default(); 301]),
            Code::InvalidArgument,
            "limit of 300",
        ),
        (
            NextTokensRequest {
                prefix_ids: vec![TokenIds { ids: vec![70_000] }],
                ..Default::default()
            },
            Code::InvalidArgument,
            "prefix_ids[0].ids[0]",
        ),
        (
            NextTokensRequest {
                prefixes: vec![Sid::default()],
                version: 42,
                ..Default::default()
            },
            Code::FailedPrecondition,
            "version",
        ),
    ];
    for (req, code, needle) in cases {
        let e = c.next_tokens(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e}");
        assert!(e.message().contains(needle), "{needle:?} not in {e}");
    }
    // Oversized message (> 64 KiB) is refused, and the connection keeps working.
    let big = Sid {
        tokens: vec![tok(1, 1); 20_000],
    };
    let e = c.next_tokens(ask(vec![big])).await.unwrap_err();
    assert!(
        matches!(
            e.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{e}"
    );
    let e = c.lookup(LookupRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let ok = c
        .next_tokens(ask(vec![Sid::default()]))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.results[0].valid, "same client still served");
    // A prefix no SID starts with is not an error: valid = false.
    let r = c
        .next_tokens(ask(vec![Sid {
            tokens: vec![tok(1, 15), tok(2, 15), tok(3, 15)],
        }]))
        .await
        .unwrap()
        .into_inner();
    assert!(r.results[0].allowed.is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_serving_until_an_index_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let table = catalog(dir.path());
    let root = dir.path().join("empty");
    let server = start(&root, config()).await;
    assert_eq!(health(&server, "").await, ServingStatus::NotServing as i32);
    let mut c = client(&server).await;
    let e = c.stats(StatsRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let metrics = server.metrics_addr.unwrap();
    assert!(
        common::http_get(metrics, "/ready")
            .await
            .starts_with("HTTP/1.1 503")
    );
    // Published by another process (here: the library), picked up without a restart.
    build_from_table(&IndexStore::new(&root), &table, "test", None).unwrap();
    wait_for_health(&server, ServingStatus::Serving).await;
    assert!(
        common::http_get(metrics, "/ready")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert_eq!(
        c.stats(StatsRequest {}).await.unwrap().into_inner().items,
        1500
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_requests_are_shed() {
    let (_dir, _table, server, mut c) = serving(ServerConfig {
        max_concurrent_requests: 1,
        ..config()
    })
    .await;
    // An update stream that stays open holds the only permit.
    let (tx, rx) = tokio::sync::mpsc::channel::<CatalogChange>(1);
    let mut holder = c.clone();
    let held = tokio::spawn(async move {
        holder
            .apply_catalog_update(admin(tokio_stream::wrappers::ReceiverStream::new(rx)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = c.stats(StatsRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    assert_eq!(
        health(&server, "").await,
        ServingStatus::Serving as i32,
        "probes are never shed"
    );
    drop(tx);
    let r = held.await.unwrap();
    assert_eq!(
        r.unwrap_err().code(),
        Code::InvalidArgument,
        "an empty update is refused"
    );
    c.stats(StatsRequest {})
        .await
        .expect("served again once the permit is back");
    let text = common::http_get(server.metrics_addr.unwrap(), "/metrics").await;
    assert!(
        text.contains("sidx_grpc_requests_total{method=\"Stats\",code=\"RESOURCE_EXHAUSTED\"} 1"),
        "{text}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_never_fail_while_versions_swap() {
    let (_dir, table, server, c) = serving(config()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let queries: Vec<_> = (0..4)
        .map(|_| {
            let (mut c, stop, done) = (c.clone(), stop.clone(), done.clone());
            let probe = sid_of(&table, 0);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = c
                        .next_tokens(NextTokensRequest {
                            prefixes: vec![Sid::default(), probe.clone()],
                            ..Default::default()
                        })
                        .await
                        .expect("no query may fail during swaps")
                        .into_inner();
                    assert!(r.results[1].complete);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut admin_client = c.clone();
    for k in 0..10 {
        let change = CatalogChange {
            change: Some(catalog_change::Change::UpsertSid(ItemSid {
                item_id: format!("swap-{k}"),
                sid: Some(base_sid_of(&table, k + 10)),
            })),
        };
        let r = admin_client
            .apply_catalog_update(admin(tokio_stream::iter(vec![change])))
            .await
            .unwrap();
        assert_eq!(r.into_inner().version, k as u64 + 2);
    }
    stop.store(true, Ordering::Relaxed);
    for q in queries {
        q.await.unwrap();
    }
    assert!(done.load(Ordering::Relaxed) > 10);
    server.shutdown().await.unwrap();
}

/// `sidx index apply` sends change files to a running service through
/// ApplyCatalogUpdate: SID upserts and deletes land in one new version; a
/// wrong token changes nothing and says why.
#[tokio::test]
async fn index_apply_sends_change_files_to_a_running_service() {
    let dir = tempfile::tempdir().unwrap();
    let sids = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generator/sids.tsv");
    let table = SidTable::read(&sids).unwrap();
    let root = dir.path().join("index");
    build_from_table(&IndexStore::new(&root), &table, "fixture", None).unwrap();
    let server = start(&root, config()).await;
    let header = std::fs::read_to_string(&sids).unwrap();
    let header = header.lines().next().unwrap();
    let upserts = dir.path().join("upserts.tsv");
    std::fs::write(&upserts, format!("{header}\nnew-item\t1:3 2:4 3:5\n")).unwrap();
    let deletes = dir.path().join("deletes.txt");
    std::fs::write(&deletes, format!("{}\n", table.id(0))).unwrap();
    let run = |token: &'static str| {
        let (addr, upserts, deletes) = (server.addr, upserts.clone(), deletes.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sidx"))
                .args(["--log", "warn", "index", "apply", "--addr"])
                .arg(addr.to_string())
                .args(["--admin-token", token, "--upsert-sids"])
                .arg(&upserts)
                .arg("--deletes")
                .arg(&deletes)
                .output()
                .unwrap()
        })
    };
    let out = run("wrong-token-0123456789").await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Unauthenticated"),
        "{err}"
    );
    let out = run(TOKEN).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            &r["version"],
            &r["previous_version"],
            &r["added"],
            &r["deleted"]
        ),
        (&2.into(), &1.into(), &1.into(), &1.into()),
        "{r}"
    );
    let mut c = client(&server).await;
    let r = c
        .lookup(LookupRequest {
            item_ids: vec!["new-item".into(), table.id(0).into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.version, 2);
    let sid = r.by_item[0].sid.as_ref().expect("the new item has a SID");
    assert_eq!(
        sid.tokens[..3]
            .iter()
            .map(|t| (t.layer, t.code))
            .collect::<Vec<_>>(),
        [(1, 3), (2, 4), (3, 5)]
    );
    assert_eq!(r.by_item[1].sid, None, "the deleted item is gone");
    server.shutdown().await.unwrap();
}

fn bit_set(map: &[u8], i: usize) -> bool {
    map[i / 8] >> (i % 8) & 1 == 1
}
