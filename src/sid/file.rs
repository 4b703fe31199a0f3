//! The SID file: TSV `item_id<TAB>tokens`, tokens space-separated `layer:code`.
//!
//! ```text
//! #sidx {"format":"sidx-sids","version":1,"codebook_sizes":[256,256,256],"collisions":"disambiguate"}
//! B00123<TAB>1:12 2:7 3:301
//! B00456<TAB>1:12 3:301
//! B00789<TAB>1:12 3:301 4:1
//! ```
//!
//! The optional first line `#sidx <json>` carries the layout and how the SIDs
//! were made; without it the layout is inferred from the data (and a token of
//! layer `L + 1` cannot be told apart from a quantizer token). Other `#` lines
//! are comments. Every other line must be an item.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    CollisionMode, DisplaySid, Layout, MAX_CODEBOOK_SIZE, MAX_DISAMBIGUATION_CODES, MAX_LAYERS,
    SidTable, Token,
};
use crate::fsx;

/// Start of the header line.
pub const HEADER_PREFIX: &str = "#sidx ";
const FORMAT: &str = "sidx-sids";
const VERSION: u32 = 1;

/// Errors reading or writing SID files.
#[derive(Debug, thiserror::Error)]
pub enum SidError {
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("invalid layout: {0}")]
    Layout(String),
    #[error(transparent)]
    Io(#[from] fsx::FsError),
}

/// What the `#sidx` header line records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SidHeader {
    pub format: String,
    pub version: u32,
    /// Codebook size of each quantizer layer `1..=L`.
    pub codebook_sizes: Vec<u32>,
    /// How items sharing a SID were handled.
    pub collisions: CollisionMode,
    /// The layer-2 mitigation these SIDs went through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitigation: Option<super::MitigationRule>,
    /// The quantization method that made them (`rq-kmeans`, `rq-balanced`),
    /// when `sidx quantize` wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl SidHeader {
    pub fn new(layout: &Layout, collisions: CollisionMode) -> Self {
        Self {
            format: FORMAT.to_owned(),
            version: VERSION,
            codebook_sizes: layout.codebook_sizes().to_vec(),
            collisions,
            mitigation: None,
            method: None,
        }
    }

    pub fn layout(&self) -> Layout {
        Layout::new(self.codebook_sizes.clone()).expect("header layout validated on creation")
    }

    /// Parses and checks the JSON of a header (format, version, layout).
    pub fn from_json(json: &str) -> Result<Self, String> {
        let header: SidHeader =
            serde_json::from_str(json).map_err(|e| format!("malformed #sidx header: {e}"))?;
        if header.format != FORMAT {
            return Err(format!(
                "header format is {:?}, expected {FORMAT:?}",
                header.format
            ));
        }
        if header.version != VERSION {
            return Err(format!(
                "header version {} is not supported (this build reads version {VERSION})",
                header.version
            ));
        }
        Layout::new(header.codebook_sizes.clone()).map_err(|e| e.to_string())?;
        Ok(header)
    }
}

/// Parses `layer:code` tokens, checking they are in strictly increasing layer order.
pub fn parse_tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut sid = Vec::new();
    for part in text.split_ascii_whitespace() {
        let (layer, code) = part
            .split_once(':')
            .ok_or_else(|| format!("token {part:?} is not layer:code"))?;
        let layer: u8 = layer
            .parse()
            .map_err(|_| format!("token {part:?}: layer {layer:?} is not a number in 1..=255"))?;
        let code: u32 = code
            .parse()
            .map_err(|_| format!("token {part:?}: code {code:?} is not a non-negative integer"))?;
        if layer == 0 {
            return Err(format!("token {part:?}: layers are 1-based"));
        }
        if let Some(prev) = sid.last().map(|t: &Token| t.layer)
            && layer <= prev
        {
            return Err(format!(
                "token {part:?}: layers must increase along a SID (layer {layer} after layer {prev})"
            ));
        }
        sid.push(Token::new(layer, code));
    }
    if sid.is_empty() {
        return Err("no tokens".to_owned());
    }
    Ok(sid)
}

impl SidTable {
    /// Reads a SID file, checking every line; errors name the file and line.
    pub fn read(path: &Path) -> Result<Self, SidError> {
        let file = File::open(path).map_err(|e| SidError::File {
            path: path.to_owned(),
            msg: format!("cannot open: {e}"),
        })?;
        Self::parse(BufReader::new(file), path)
    }

    /// Parses SID file text from `reader`; errors name `path` and the line.
    /// A UTF-8 byte order mark before the first line is skipped.
    pub fn parse(mut reader: impl BufRead, path: &Path) -> Result<Self, SidError> {
        let parse_err = |line: usize, msg: String| SidError::Parse {
            path: path.to_owned(),
            line,
            msg,
        };
        skip_bom(&mut reader).map_err(|e| parse_err(1, format!("cannot read: {e}")))?;
        let mut header: Option<SidHeader> = None;
        // The header is only known after the first line; a provisional one is replaced below.
        let mut table = SidTable::new(SidHeader::new(
            &Layout::new(vec![1]).expect("valid"),
            CollisionMode::Share,
        ));
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for (i, line) in reader.lines().enumerate() {
            let lineno = i + 1;
            let line = line.map_err(|e| parse_err(lineno, format!("cannot read: {e}")))?;
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if let Some(json) = line.strip_prefix(HEADER_PREFIX) {
                if lineno != 1 {
                    return Err(parse_err(
                        lineno,
                        "the #sidx header must be the first line".into(),
                    ));
                }
                header = Some(SidHeader::from_json(json).map_err(|m| parse_err(lineno, m))?);
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            if line.trim().is_empty() {
                return Err(parse_err(
                    lineno,
                    "empty line (expected item_id<TAB>tokens)".into(),
                ));
            }
            let (id, tokens) = line.split_once('\t').ok_or_else(|| {
                parse_err(lineno, "missing TAB between item id and tokens".into())
            })?;
            if id.is_empty() || id.trim() != id {
                return Err(parse_err(
                    lineno,
                    format!("item id {id:?} is empty or has surrounding spaces"),
                ));
            }
            let sid = parse_tokens(tokens).map_err(|m| parse_err(lineno, m))?;
            match &header {
                Some(h) => {
                    let layout = h.layout();
                    for &t in &sid {
                        layout.check(t).map_err(|m| parse_err(lineno, m))?;
                    }
                }
                None => check_headerless(&sid).map_err(|m| parse_err(lineno, m))?,
            }
            if let Some(first) = first_line.insert(id.to_owned(), lineno) {
                return Err(parse_err(
                    lineno,
                    format!("duplicate item id {id:?} (first seen on line {first})"),
                ));
            }
            table.push(id, &sid);
        }
        if table.is_empty() {
            return Err(SidError::File {
                path: path.to_owned(),
                msg: "no items".into(),
            });
        }
        table.header = match header {
            Some(h) => h,
            None => {
                let layout = infer_layout(&table).map_err(|msg| SidError::File {
                    path: path.to_owned(),
                    msg,
                })?;
                SidHeader::new(&layout, CollisionMode::Share)
            }
        };
        Ok(table)
    }

    /// Writes the table with its header, atomically (temp file + rename).
    pub fn write(&self, path: &Path) -> Result<(), SidError> {
        fsx::write_atomic(path, |w| self.write_to(w))?;
        Ok(())
    }

    /// Writes header and items to any writer.
    pub fn write_to(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let header = serde_json::to_string(&self.header).expect("header serializes");
        writeln!(w, "{HEADER_PREFIX}{header}")?;
        for (id, sid) in self.iter() {
            writeln!(w, "{id}\t{}", DisplaySid(sid))?;
        }
        Ok(())
    }
}

/// Skips a leading UTF-8 byte order mark.
fn skip_bom(reader: &mut impl BufRead) -> std::io::Result<()> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    if reader.fill_buf()?.starts_with(BOM) {
        reader.consume(BOM.len());
    }
    Ok(())
}

/// Without a header the layout is not known yet: tokens must at least fit
/// the largest layout (the last layer may be a quantizer or a disambiguation one).
fn check_headerless(sid: &[Token]) -> Result<(), String> {
    let max_code = MAX_CODEBOOK_SIZE.max(MAX_DISAMBIGUATION_CODES);
    for t in sid {
        if t.layer as usize > MAX_LAYERS {
            return Err(format!(
                "token {t}: layer {} is beyond the {MAX_LAYERS} layers a layout may have",
                t.layer
            ));
        }
        if t.code >= max_code {
            return Err(format!(
                "token {t}: code {} is not below {max_code}",
                t.code
            ));
        }
    }
    Ok(())
}

/// Without a header: L is the highest layer seen, each codebook as large as its largest code + 1.
fn infer_layout(table: &SidTable) -> Result<Layout, String> {
    let layers = table.tokens.iter().map(|t| t.layer).max().unwrap_or(1) as usize;
    let mut sizes = vec![1u32; layers];
    for t in &table.tokens {
        let m = &mut sizes[t.layer as usize - 1];
        *m = (*m).max(t.code.saturating_add(1));
    }
    Layout::new(sizes).map_err(|e| format!("inferring the layout (no #sidx header): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SidTable, SidError> {
        SidTable::parse(text.as_bytes(), Path::new("s.tsv"))
    }

    #[test]
    fn a_leading_bom_is_skipped() {
        let header = r#"#sidx {"format":"sidx-sids","version":1,"codebook_sizes":[4,4],"collisions":"share"}"#;
        let t = parse(&format!("\u{feff}{header}\na\t1:1 2:2\n")).unwrap();
        assert_eq!(t.layout().codebook_sizes(), &[4, 4]);
        let t = parse("\u{feff}a\t1:1\n").unwrap();
        assert_eq!(t.id(0), "a", "the BOM is not part of the first item id");
        // A BOM anywhere else is still part of the text.
        let e = parse("a\t1:1\n\u{feff}b\t1:2\n").unwrap();
        assert_eq!(e.id(1), "\u{feff}b");
    }

    #[test]
    fn headerless_files_outside_every_layout_are_line_errors() {
        // Layer 255 once panicked while inferring the layout.
        let e = parse("a\t1:1 255:0\n").unwrap_err().to_string();
        assert!(e.contains("s.tsv:1") && e.contains("layer 255"), "{e}");
        // A huge code once inferred a 4-billion-code codebook (and a 34 GB allocation).
        let e = parse("a\t1:0\nb\t1:1 4:4294967290\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.tsv:2") && e.contains("4294967290"), "{e}");
        let t = parse("a\t1:0 2:65535\n").unwrap();
        assert_eq!(t.layout().codebook_sizes(), &[1, 65536]);
    }

    #[test]
    fn header_sizes_beyond_the_limits_are_refused() {
        let e = parse(
            "#sidx {\"format\":\"sidx-sids\",\"version\":1,\"codebook_sizes\":[4294967295,4294967295],\"collisions\":\"share\"}\na\t1:1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("s.tsv:1") && e.contains("codebook size 4294967295"),
            "{e}"
        );
        let e = parse(
            "#sidx {\"format\":\"sidx-sids\",\"version\":1,\"codebook_sizes\":[256,256,256],\"collisions\":\"share\"}\na\t1:0 4:4294966528\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("s.tsv:2") && e.contains("disambiguation code"),
            "{e}"
        );
    }
}
