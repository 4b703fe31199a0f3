//! `sidx index …`: build, verify, query and update SID indexes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use sidx::client::mirror::Mirror;

use sidx::catalog::{CatalogUpdate, Embeddings};
use sidx::index::{IndexStore, build_from_sid_file, build_from_table};
use sidx::pipeline;
use sidx::quantize::{CODEBOOKS_FILE, QuantizerMeta, ResidualQuantizer};
use sidx::shards;
use sidx::sid::{CollisionMode, Layout, SidTable};

#[derive(Subcommand)]
pub enum IndexCommand {
    /// Build a new index version from a SID file and publish it.
    Build(BuildArgs),
    /// Open the current (or a given) version and verify every checksum and invariant.
    Verify(VersionArgs),
    /// Which tokens may follow a prefix, is it complete, which items does it hold.
    Query(QueryArgs),
    /// Apply a catalog update (upserts and deletes) and publish the new version.
    Update(UpdateArgs),
    /// Send a catalog update to a running index service (ApplyCatalogUpdate, admin token).
    Apply(ApplyArgs),
    /// List published versions and the current one.
    Versions(RootArg),
    /// Point CURRENT back at an older, still-kept version.
    Rollback(RollbackArgs),
    /// Copy the version `sidx serve index` serves into a local root (once, or following swaps).
    Mirror(MirrorArgs),
    /// Publish the current version again in another file format (v1 → v2).
    Migrate(MigrateArgs),
}

#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    root: RootArg,
    /// The format version to write.
    #[arg(long = "to", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=2))]
    to: u32,
}

#[derive(Args)]
pub struct MirrorArgs {
    /// The index service, e.g. http://sidx-index:50051.
    #[arg(long, env = "SIDX_MIRROR_FROM")]
    from: String,
    /// Replication (or admin) token of the index service.
    #[arg(long, env = "SIDX_MIRROR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Local index root; created if missing.
    #[arg(long, env = "SIDX_INDEX")]
    index: PathBuf,
    /// Keep following the served version (until SIGTERM) instead of copying it once.
    #[arg(long)]
    follow: bool,
}

#[derive(Args)]
pub struct RootArg {
    /// Index root directory (holds CURRENT and versions/).
    #[arg(long, env = "SIDX_INDEX")]
    index: PathBuf,
}

#[derive(Args)]
pub struct BuildArgs {
    /// SID file (TSV `item_id<TAB>layer:code …`); Parquet SIDs: a
    /// .parquet file or a folder of shards (id, codes list<int32> or
    /// layer_1 … layer_K columns); quantizer codes as a .npy integer
    /// array [items, layers] (with --ids, and --layout or --codebooks); or
    /// a `sidx quantize --out` folder (its codes.npy, ids.txt and
    /// codebooks.npy, collisions as it resolved them: no TSV parse).
    #[arg(long)]
    sids: PathBuf,
    /// Item ids of the rows of a .npy of codes, one per line [default: row numbers].
    #[arg(long)]
    ids: Option<PathBuf>,
    #[command(flatten)]
    headerless: HeaderlessArgs,
    /// Codebooks (codebooks.npy) to store, so updates can encode embeddings.
    #[arg(long)]
    codebooks: Option<PathBuf>,
    /// Index root directory; created if missing.
    #[arg(long)]
    out: PathBuf,
    /// Versions kept for rollback (at least 2).
    #[arg(long, default_value_t = 3)]
    keep: usize,
    /// Index file format: 2 (compact: ≤ 8 bytes per SID with integer ids)
    /// or 1 (trie + FSTs, five times larger).
    #[arg(long, default_value_t = sidx::index::DEFAULT_FORMAT_VERSION, value_parser = clap::value_parser!(u32).range(1..=2))]
    format_version: u32,
}

/// How to read Parquet SIDs not written by sidx (no `sidx.header` metadata).
#[derive(Args)]
pub struct HeaderlessArgs {
    /// Codebook sizes of such SIDs, e.g. 256,256,256 [default: those of --codebooks].
    #[arg(long, value_delimiter = ',')]
    layout: Vec<u32>,
    /// Items sharing such a SID: disambiguated in item id order, or shared.
    #[arg(long, value_enum, default_value = "disambiguate")]
    collisions: super::Collisions,
}

/// A `sidx quantize --out` folder given as `--sids`: its codes, ids and
/// codebooks are read instead of its `sids.tsv`.
struct QuantizeRun {
    dir: PathBuf,
    meta: QuantizerMeta,
}

impl QuantizeRun {
    /// The run at `dir`, when it is a folder holding `codes.npy`.
    fn at(dir: &Path) -> Result<Option<Self>> {
        if !dir.join(pipeline::CODES_FILE).is_file() {
            return Ok(None);
        }
        let meta = QuantizerMeta::beside(&dir.join(CODEBOOKS_FILE)).with_context(|| {
            format!(
                "{}: holds {} but no readable {} (not a `sidx quantize` output?)",
                dir.display(),
                pipeline::CODES_FILE,
                sidx::quantize::QUANTIZER_FILE
            )
        })?;
        Ok(Some(Self {
            dir: dir.to_owned(),
            meta,
        }))
    }

    /// Points `a` at the run's files; its ids and layout are the run's own.
    fn apply(&self, a: &mut BuildArgs) -> Result<()> {
        let d = self.dir.display();
        if let Some(ids) = &a.ids {
            bail!(
                "--ids {}: {d} is a `sidx quantize` output; its item ids are {d}/{}",
                ids.display(),
                pipeline::IDS_FILE
            );
        }
        if !a.headerless.layout.is_empty() {
            bail!("--layout: {d} is a `sidx quantize` output; its layout is its codebooks'");
        }
        a.ids = Some(self.dir.join(pipeline::IDS_FILE));
        a.codebooks
            .get_or_insert_with(|| self.dir.join(CODEBOOKS_FILE));
        if let Some(c) = self.meta.collisions {
            a.headerless.collisions = c.into();
        }
        a.sids = self.dir.join(pipeline::CODES_FILE);
        Ok(())
    }
}

/// Reads a SID file, Parquet SID shards or a .npy of codes; `layout`
/// serves headerless shards and codes.
fn read_sids(
    path: &Path,
    ids: Option<&Path>,
    layout: Option<Layout>,
    collisions: CollisionMode,
) -> Result<SidTable> {
    if path.extension().is_some_and(|e| e == "npy") {
        let layout = layout.with_context(|| {
            format!(
                "{}: codes need their layout: pass --layout (e.g. 256,256,256) or --codebooks",
                path.display()
            )
        })?;
        return Ok(SidTable::read_codes(path, ids, &layout, collisions)?);
    }
    if let Some(ids) = ids {
        bail!(
            "--ids {} names the items of a .npy of codes; {} is not one",
            ids.display(),
            path.display()
        );
    }
    if shards::is_parquet(path) {
        let columns = shards::SidColumns { layout, collisions };
        return Ok(shards::read_sids(path, &columns)?);
    }
    let t0 = std::time::Instant::now();
    let table = SidTable::read(path)?;
    tracing::debug!(
        items = table.len(),
        parse_ms = t0.elapsed().as_millis() as u64,
        "SID file read"
    );
    Ok(table)
}

#[derive(Args)]
pub struct VersionArgs {
    #[command(flatten)]
    root: RootArg,
    /// A specific version (default: CURRENT).
    #[arg(long)]
    version: Option<u64>,
}

#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    root: RootArg,
    /// Prefix as `layer:code` tokens, e.g. "1:12 2:7" (empty = the root).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Items listed at most (those whose SID starts with the prefix).
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    root: RootArg,
    #[command(flatten)]
    changes: ChangeFiles,
    /// Versions kept for rollback (at least 2).
    #[arg(long, default_value_t = 3)]
    keep: usize,
}

#[derive(Args)]
pub struct ApplyArgs {
    /// The index service, host:port or an http(s):// URL.
    #[arg(long)]
    addr: String,
    /// Admin token of the service.
    #[arg(long, env = "SIDX_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// CA certificate (PEM) to trust for an `https://` address.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Deadline of the call, seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    #[command(flatten)]
    changes: ChangeFiles,
}

/// The change files of a catalog update.
#[derive(Args)]
pub struct ChangeFiles {
    /// Embeddings of items to add, encoded with the stored codebooks: .npy
    /// float32 [N, D] (with --upsert-ids), or Parquet shards with an id column.
    #[arg(long)]
    upserts: Option<PathBuf>,
    /// Ids of the .npy --upserts rows, one per line.
    #[arg(long, requires = "upserts")]
    upsert_ids: Option<PathBuf>,
    /// Items to add or re-point: a SID file or Parquet SIDs (headerless
    /// shards take the index's layout and collision mode).
    #[arg(long)]
    upsert_sids: Option<PathBuf>,
    /// Item ids to remove, one per line.
    #[arg(long)]
    deletes: Option<PathBuf>,
}

impl ChangeFiles {
    /// The update these files describe; `index` (the root to update, when
    /// known here) gives headerless Parquet SIDs their layout.
    fn read(&self, index: Option<&Path>) -> Result<CatalogUpdate> {
        let mut update = CatalogUpdate::default();
        if let Some(emb) = &self.upserts {
            if self.upsert_ids.is_none() && !shards::is_parquet(emb) {
                bail!(
                    "--upserts {}: a .npy array needs --upsert-ids",
                    emb.display()
                );
            }
            let (x, d, ids) = pipeline::read_catalog(
                emb,
                self.upsert_ids.as_deref(),
                &shards::EmbeddingColumns::default(),
            )?;
            update.upsert_embeddings = Some(Embeddings {
                values: x,
                dim: d,
                ids,
            });
        }
        if let Some(p) = &self.upsert_sids {
            let (layout, collisions) = match index {
                Some(root) if shards::is_parquet(p) => {
                    let current = IndexStore::new(root).open_current()?;
                    (
                        Some(current.layout().clone()),
                        current.manifest().collisions,
                    )
                }
                _ => (None, CollisionMode::Share),
            };
            update.upsert_sids = Some(read_sids(p, None, layout, collisions)?);
        }
        if let Some(p) = &self.deletes {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            update.deletes = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_owned())
                .collect();
        }
        if update.upsert_embeddings.is_none()
            && update.upsert_sids.is_none()
            && update.deletes.is_empty()
        {
            bail!("nothing to update: give --upserts/--upsert-ids, --upsert-sids or --deletes");
        }
        Ok(update)
    }
}

#[derive(Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    root: RootArg,
    /// Version to serve again.
    #[arg(long)]
    version: u64,
}

pub fn run(cmd: IndexCommand) -> Result<()> {
    match cmd {
        IndexCommand::Mirror(a) => {
            sidx::client::mirror::prepare_root(&a.index)?;
            let mirror = Mirror::new(a.from, IndexStore::new(&a.index)).with_token(a.token);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let v = mirror.sync_once().await?;
                println!("{}", serde_json::json!({ "version": v }));
                if a.follow {
                    mirror.run(sidx::server::termination()).await;
                }
                anyhow::Ok(())
            })?;
        }
        IndexCommand::Build(mut a) => {
            let quantized = QuantizeRun::at(&a.sids)?;
            if let Some(run) = &quantized {
                run.apply(&mut a)?;
            }
            let layout = if !a.headerless.layout.is_empty() {
                Some(Layout::new(a.headerless.layout.clone())?)
            } else if let Some(cb) = &a.codebooks {
                Some(Layout::new(ResidualQuantizer::load(cb)?.codebook_sizes())?)
            } else {
                None
            };
            let store = IndexStore::new(&a.out)
                .with_keep(a.keep)
                .with_format_version(a.format_version);
            let source = a.sids.display().to_string();
            let sid_file = a.ids.is_none()
                && a.sids.extension().is_none_or(|e| e != "npy")
                && !shards::is_parquet(&a.sids);
            let s = if sid_file && quantized.is_none() {
                build_from_sid_file(&store, &a.sids, &source, a.codebooks.as_deref())?
            } else {
                let mut table = read_sids(
                    &a.sids,
                    a.ids.as_deref(),
                    layout,
                    a.headerless.collisions.into(),
                )?;
                if let Some(run) = quantized {
                    table.header_mut().method = Some(run.meta.method.name().to_owned());
                }
                build_from_table(&store, &table, &source, a.codebooks.as_deref())?
            };
            println!("{}", serde_json::to_string(&s)?);
        }
        IndexCommand::Verify(a) => {
            let store = IndexStore::new(&a.root.index);
            let t0 = std::time::Instant::now();
            let index = match a.version {
                Some(v) => store.open_version(v)?,
                None => store.open_current()?,
            };
            let m = index.manifest();
            println!(
                "{}",
                json!({"version": m.catalog_version, "ok": true, "format_version": m.format_version,
                       "sids": m.sids, "items": m.items, "nodes": m.nodes, "bytes": m.bytes(),
                       "seconds": t0.elapsed().as_secs_f64()})
            );
        }
        IndexCommand::Query(a) => {
            let index = IndexStore::new(&a.root.index).open_current()?;
            let tokens = if a.prefix.trim().is_empty() {
                Vec::new()
            } else {
                sidx::sid::parse_tokens(&a.prefix).map_err(|m| anyhow::anyhow!("--prefix: {m}"))?
            };
            let mut ids = Vec::new();
            index.token_ids(&tokens, &mut ids).context("--prefix")?;
            let next = index.next_tokens(&ids);
            let show = |t: &[u16]| {
                t.iter()
                    .map(|&t| index.token(t).to_string())
                    .collect::<Vec<_>>()
            };
            let items: Vec<_> = index
                .prefix_items(&ids, a.limit)
                .into_iter()
                .map(|(sid, id)| json!({"item": id, "sid": show(&sid).join(" ")}))
                .collect();
            println!(
                "{}",
                json!({"prefix": a.prefix, "version": index.version(), "valid": next.node.is_some(),
                       "next": show(next.allowed), "complete": next.complete, "items": items})
            );
        }
        IndexCommand::Migrate(a) => {
            let store = IndexStore::new(&a.root.index);
            match sidx::index::migrate(&store, a.to)? {
                Some(s) => println!("{}", serde_json::to_string(&s)?),
                None => println!(
                    "{}",
                    json!({"migrated": false, "version": store.current()?, "format_version": a.to,
                           "reason": "the current version is already in this format"})
                ),
            }
        }
        IndexCommand::Update(a) => {
            let store = IndexStore::new(&a.root.index).with_keep(a.keep);
            let s = a.changes.read(Some(&a.root.index))?.apply(&store)?;
            println!("{}", serde_json::to_string(&s)?);
        }
        IndexCommand::Apply(a) => {
            let changes = sidx::client::catalog::changes(&a.changes.read(None)?);
            let mut connect = sidx::client::Connect::new(&a.addr)
                .timeout(std::time::Duration::from_secs(a.timeout_s));
            if let Some(ca) = &a.tls_ca {
                connect = connect.tls_ca(
                    std::fs::read(ca).with_context(|| format!("--tls-ca {}", ca.display()))?,
                );
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let r = runtime.block_on(async {
                let channel = connect.channel().await?;
                sidx::client::catalog::apply(channel, &a.admin_token, changes)
                    .await
                    .map_err(|s| anyhow::anyhow!("{}: {:?}: {}", a.addr, s.code(), s.message()))
            })?;
            println!(
                "{}",
                json!({"version": r.version, "previous_version": r.previous_version,
                       "added": r.added, "replaced": r.replaced, "kept": r.kept,
                       "deleted": r.deleted})
            );
        }
        IndexCommand::Versions(a) => {
            let store = IndexStore::new(&a.index);
            println!(
                "{}",
                json!({"current": store.current()?, "versions": store.versions()?})
            );
        }
        IndexCommand::Rollback(a) => {
            let store = IndexStore::new(&a.root.index);
            store.rollback(a.version)?;
            println!("{}", json!({"current": a.version}));
        }
    }
    Ok(())
}
