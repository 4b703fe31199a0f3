//! `sidx generator init`: writes the sidecar (`generator.json`) of a model
//! from what the model and the index say, and checks it — version 1 (SID
//! tokens at an offset, BOS) or version 2 (SID tokens named in the
//! tokenizer, no BOS, token ids or a text template around the history).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use sidx::generate::{
    PromptTemplate, RuntimeOptions, SidTokenNames, SidTokensInit, Sidecar, SidecarInit, model_facts,
};
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
    #[arg(long, default_value_t = 1, conflicts_with = "no_bos")]
    bos_id: u32,
    /// Prompts start without a BOS token (sidecar version 2).
    #[arg(long)]
    no_bos: bool,
    /// Written after each history item's SID.
    #[arg(long, default_value_t = 2)]
    sep_id: u32,
    /// Ends a generated SID [default: --sep-id].
    #[arg(long)]
    end_of_sid_id: Option<u32>,
    /// Vocabulary id of SID token 0; every id from here to the end of the vocabulary is a SID token.
    #[arg(long, default_value_t = 3, conflicts_with = "sid_token_names")]
    sid_token_offset: u32,
    /// SID tokens named in the tokenizer instead, e.g. `<{letter}_{code}>`
    /// ({layer} 1-based, {letter} a, b, …, {code}); sidecar version 2.
    #[arg(long)]
    sid_token_names: Option<String>,
    /// The tokenizer of --sid-token-names and --prompt-template [default:
    /// tokenizer.json in the model's folder].
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Token ids before the history, comma-separated (sidecar version 2).
    #[arg(long, value_delimiter = ',', conflicts_with = "prompt_template")]
    prompt_prefix: Vec<u32>,
    /// Token ids after the history, before the SID (sidecar version 2).
    #[arg(long, value_delimiter = ',', conflicts_with = "prompt_template")]
    prompt_suffix: Vec<u32>,
    /// The prompt as text around `{history}`, e.g. "The user bought
    /// {history}. Next:", tokenized with the tokenizer (sidecar version 2).
    #[arg(long)]
    prompt_template: Option<String>,
    /// Text between history items in --prompt-template, e.g. ", "
    /// [default: --sep-id after each item].
    #[arg(long, requires = "prompt_template")]
    prompt_separator: Option<String>,
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
    let out = Sidecar::path_or_default(a.out.as_deref(), &a.model);
    let out_dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
    // Stored relative to the sidecar when it sits beside it.
    let tokenizer = || -> Result<PathBuf> {
        let model_dir = if a.model.is_dir() {
            a.model.clone()
        } else {
            a.model.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let tokenizer = a
            .tokenizer
            .clone()
            .unwrap_or_else(|| model_dir.join("tokenizer.json"));
        Ok(match (tokenizer.parent(), tokenizer.file_name()) {
            (Some(d), Some(f)) if same_dir(d, &out_dir) => PathBuf::from(f),
            _ => std::path::absolute(&tokenizer)?,
        })
    };
    if a.tokenizer.is_some() && a.sid_token_names.is_none() && a.prompt_template.is_none() {
        bail!("--tokenizer is for --sid-token-names or --prompt-template");
    }
    let sid_tokens = match &a.sid_token_names {
        None => SidTokensInit::Offset(a.sid_token_offset),
        Some(template) => SidTokensInit::Names(SidTokenNames {
            tokenizer: tokenizer()?,
            template: template.clone(),
        }),
    };
    let prompt_template = match &a.prompt_template {
        None => None,
        Some(text) => Some(PromptTemplate {
            tokenizer: tokenizer()?,
            text: text.clone(),
            separator: a.prompt_separator.clone(),
        }),
    };
    let init = SidecarInit {
        pad_id: a.pad_id,
        bos_id: (!a.no_bos).then_some(a.bos_id),
        sep_id: a.sep_id,
        end_of_sid_id: a.end_of_sid_id,
        sid_tokens,
        prompt_prefix: a.prompt_prefix.clone(),
        prompt_suffix: a.prompt_suffix.clone(),
        prompt_template,
        dir: out_dir.clone(),
        max_positions: a.max_positions.or(facts.max_positions).unwrap_or(1024),
        max_history_items: a.max_history_items,
        decoder_start_id: a.decoder_start_id.or(facts.decoder_start_id),
    };
    let sidecar = Sidecar::init(vocab, &index, &init)
        .map_err(|e| anyhow::anyhow!("the sidecar would not fit: {e}"))?;
    if out.exists() && !a.force {
        bail!("{} exists (pass --force to overwrite)", out.display());
    }
    let json = serde_json::to_string_pretty(&sidecar)? + "\n";
    sidx::fsx::write_atomic(&out, |w| w.write_all(json.as_bytes()))?;
    println!(
        "wrote {} (version {}): vocabulary {vocab}, {} SID tokens for codebooks {:?}, end-of-SID {}",
        out.display(),
        sidecar.version,
        sidecar.sid_token_limit,
        sidecar.codebook_sizes,
        sidecar.end_of_sid_id
    );
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        p.canonicalize().ok()
    };
    norm(a).is_some() && norm(a) == norm(b)
}
