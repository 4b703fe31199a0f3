//! `sidx generator init`: writes the sidecar (`generator.json`) of a model
//! from what the model and the index say, and checks it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use sidx::generate::{RuntimeOptions, Sidecar, SidecarInit, model_facts};
use sidx::index::IndexStore;

#[derive(Subcommand)]
pub enum GeneratorCommand {
    /// Write a model's sidecar from its graph / config.json and the index layout.
    Init(InitArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// The model: an ONNX file or an export folder.
    #[arg(long)]
    model: PathBuf,
    /// The index the model serves (its current version's layout and tokens).
    #[arg(long)]
    index: PathBuf,
    /// Where to write [default: generator.json in the folder or beside the file].
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pad_id: u32,
    #[arg(long, default_value_t = 1)]
    bos_id: u32,
    /// Written after each history item's SID.
    #[arg(long, default_value_t = 2)]
    sep_id: u32,
    /// Ends a generated SID [default: --sep-id].
    #[arg(long)]
    end_of_sid_id: Option<u32>,
    /// Vocabulary id of SID token 0; every id from here to the end of the vocabulary is a SID token.
    #[arg(long, default_value_t = 3)]
    sid_token_offset: u32,
    /// Longest prompt plus SID [default: config.json's n_positions / max_position_embeddings, else 1024].
    #[arg(long)]
    max_positions: Option<u32>,
    #[arg(long, default_value_t = 20)]
    max_history_items: u32,
    /// An encoder-decoder's first decoder token [default: config.json's decoder_start_token_id].
    #[arg(long)]
    decoder_start_id: Option<u32>,
    /// Overwrite an existing sidecar.
    #[arg(long)]
    force: bool,
    /// ONNX Runtime library [default: ORT_DYLIB_PATH, lib/ beside the executable, .ort/lib].
    #[arg(long, env = "SIDX_ORT_LIB")]
    ort_lib: Option<PathBuf>,
}

pub fn run(c: GeneratorCommand) -> Result<()> {
    match c {
        GeneratorCommand::Init(a) => init(&a),
    }
}

fn init(a: &InitArgs) -> Result<()> {
    let opts = RuntimeOptions {
        library: a.ort_lib.clone(),
        ..RuntimeOptions::default()
    };
    let facts = model_facts(&a.model, &opts)?;
    let vocab = facts.vocab_size.with_context(|| {
        format!(
            "{}: neither the logits nor config.json give the vocabulary size",
            a.model.display()
        )
    })?;
    let index = IndexStore::new(&a.index)
        .open_current()
        .with_context(|| format!("opening the index in {}", a.index.display()))?;
    let init = SidecarInit {
        pad_id: a.pad_id,
        bos_id: a.bos_id,
        sep_id: a.sep_id,
        end_of_sid_id: a.end_of_sid_id,
        sid_token_offset: a.sid_token_offset,
        max_positions: a.max_positions.or(facts.max_positions).unwrap_or(1024),
        max_history_items: a.max_history_items,
        decoder_start_id: a.decoder_start_id.or(facts.decoder_start_id),
    };
    let sidecar = Sidecar::init(vocab, &index, &init)
        .map_err(|e| anyhow::anyhow!("the sidecar would not fit: {e}"))?;
    let out = a.out.clone().unwrap_or_else(|| {
        if a.model.is_dir() {
            a.model.join("generator.json")
        } else {
            Sidecar::path_for(&a.model)
        }
    });
    if out.exists() && !a.force {
        bail!("{} exists (pass --force to overwrite)", out.display());
    }
    let json = serde_json::to_string_pretty(&sidecar)? + "\n";
    sidx::fsx::write_atomic(&out, |w| w.write_all(json.as_bytes()))?;
    println!(
        "wrote {}: vocabulary {vocab}, SID tokens {}..{} for codebooks {:?}, end-of-SID {}",
        out.display(),
        a.sid_token_offset,
        a.sid_token_offset + sidecar.sid_token_limit,
        sidecar.codebook_sizes,
        sidecar.end_of_sid_id
    );
    Ok(())
}
