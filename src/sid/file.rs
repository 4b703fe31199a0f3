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

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
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
    Npy(#[from] crate::npy::NpyError),
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
        Self::parse_bytes(&read_bytes(path)?, path)
    }

    /// Parses SID file text from `reader`; errors name `path` and the line.
    pub fn parse(mut reader: impl Read, path: &Path) -> Result<Self, SidError> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| SidError::File {
            path: path.to_owned(),
            msg: format!("cannot read: {e}"),
        })?;
        Self::parse_bytes(&bytes, path)
    }

    /// Parses SID file text, in parallel pieces of whole lines; errors name
    /// `path` and the line. A UTF-8 byte order mark before the first line
    /// is skipped.
    pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Self, SidError> {
        let mut parsed = parse_pieces(bytes, path, |_| TablePiece::default())?;
        let parts = &parsed.pieces;
        let mut table = SidTable::concat(
            SidHeader::new(&Layout::new(vec![1]).expect("valid"), CollisionMode::Share),
            &parts.iter().map(|p| &p.table).collect::<Vec<_>>(),
        );
        let bad_line = parsed.error.take();
        let header = parsed.header.take();
        let line_of = |e: &SidError| match e {
            SidError::Parse { line, .. } => *line,
            _ => usize::MAX,
        };
        // Ids that rise as integers from piece to piece cannot repeat.
        let rising = RisingIds::chain(parts.iter().map(|p| &p.rising));
        let duplicate = if rising {
            None
        } else {
            let item_lines: Vec<usize> = parts
                .iter()
                .flat_map(|p| p.item_lines.iter().copied())
                .collect();
            check_unique_ids(&table, &item_lines, path).err()
        };
        match (duplicate, bad_line) {
            (Some(d), Some(e)) => return Err(if line_of(&d) < line_of(&e) { d } else { e }),
            (Some(e), None) | (None, Some(e)) => return Err(e),
            (None, None) => {}
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

/// The bytes of the SID file at `path`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, SidError> {
    std::fs::read(path).map_err(|e| SidError::File {
        path: path.to_owned(),
        msg: format!("cannot open: {e}"),
    })
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn parse_error(path: &Path, line: usize, msg: String) -> SidError {
    SidError::Parse {
        path: path.to_owned(),
        line,
        msg,
    }
}

/// One line's bytes as text (without a trailing CR).
fn line_text<'a>(bytes: &'a [u8], line: usize, path: &Path) -> Result<&'a str, SidError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| parse_error(path, line, "cannot read: not valid UTF-8".into()))?;
    Ok(text.strip_suffix('\r').unwrap_or(text))
}

/// Cuts `body` into about `pieces` runs of whole lines (each but the last
/// ending in a newline).
fn split_lines(body: &[u8], pieces: usize) -> Vec<&[u8]> {
    let target = body.len().div_ceil(pieces.max(1)).max(1 << 16);
    let mut out = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let mut end = (start + target).min(body.len());
        if let Some(p) = body[end..].iter().position(|&b| b == b'\n') {
            end += p + 1;
        } else {
            end = body.len();
        }
        out.push(&body[start..end]);
        start = end;
    }
    out
}

/// Takes the items of one piece of a SID file, in file order.
pub trait ItemSink: Send {
    /// Item `id` of line `line`, its tokens checked against the header's
    /// layout (without one, against the limits of every layout); `Break`
    /// stops the piece there.
    fn item(&mut self, line: usize, id: &str, sid: &[Token]) -> ControlFlow<()>;
}

/// A SID file parsed in parallel pieces of whole lines, up to its first
/// bad line.
pub struct Pieces<S> {
    pub header: Option<SidHeader>,
    /// A sink per piece in file order, the last the one holding `error`.
    pub pieces: Vec<S>,
    /// The file's first bad line, if any.
    pub error: Option<SidError>,
    /// Whether a sink stopped its piece (later items were not read).
    pub stopped: bool,
}

/// Parses a SID file into a sink per piece, made by `sink` from the
/// file's header, in parallel; a bad header is the error, a bad line ends
/// the pieces ([`Pieces::error`]). A UTF-8 byte order mark before the first
/// line is skipped.
pub fn parse_pieces<S: ItemSink>(
    bytes: &[u8],
    path: &Path,
    sink: impl Fn(Option<&SidHeader>) -> S + Sync,
) -> Result<Pieces<S>, SidError> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let (header, body, body_line) = if bytes.starts_with(HEADER_PREFIX.as_bytes()) {
        let end = bytes
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(bytes.len());
        let line = line_text(&bytes[..end], 1, path)?;
        let json = line.strip_prefix(HEADER_PREFIX).unwrap_or(line);
        let header = SidHeader::from_json(json).map_err(|m| parse_error(path, 1, m))?;
        (Some(header), &bytes[(end + 1).min(bytes.len())..], 2)
    } else {
        (None, bytes, 1)
    };
    let layout = header.as_ref().map(SidHeader::layout);
    let pieces = split_lines(body, 4 * rayon::current_num_threads());
    let line_counts: Vec<usize> = pieces
        .par_iter()
        .map(|p| memchr::memchr_iter(b'\n', p).count())
        .collect();
    let first_lines: Vec<usize> = line_counts
        .iter()
        .scan(body_line, |line, n| {
            Some(std::mem::replace(line, *line + n))
        })
        .collect();
    let read = |piece: &[u8], first: usize| {
        let mut s = sink(header.as_ref());
        let outcome = parse_lines(piece, first, layout.as_ref(), path, &mut s);
        (s, outcome)
    };
    let mut parsed: Vec<(S, Result<ControlFlow<()>, SidError>)> = pieces
        .par_iter()
        .zip(&first_lines)
        .map(|(piece, &first)| read(piece, first))
        .collect();
    // Each piece stops at its first bad line; the pieces after the first
    // that has one are dropped.
    let used = parsed
        .iter()
        .position(|p| p.1.is_err())
        .map_or(parsed.len(), |k| k + 1);
    parsed.truncate(used);
    let mut out = Pieces {
        header,
        pieces: Vec::with_capacity(used),
        error: None,
        stopped: false,
    };
    for (s, outcome) in parsed {
        match outcome {
            Ok(flow) => out.stopped |= flow.is_break(),
            Err(e) => out.error = Some(e),
        }
        out.pieces.push(s);
    }
    Ok(out)
}

/// A piece's items as a table, with the line of each.
struct TablePiece {
    table: SidTable,
    item_lines: Vec<usize>,
    rising: RisingIds,
}

impl Default for TablePiece {
    fn default() -> Self {
        let layout = Layout::new(vec![1]).expect("valid");
        Self {
            table: SidTable::new(SidHeader::new(&layout, CollisionMode::Share)),
            item_lines: Vec::new(),
            rising: RisingIds::default(),
        }
    }
}

impl ItemSink for TablePiece {
    fn item(&mut self, line: usize, id: &str, sid: &[Token]) -> ControlFlow<()> {
        self.table.push(id, sid);
        self.item_lines.push(line);
        self.rising.see(super::integer_id(id.as_bytes()));
        ControlFlow::Continue(())
    }
}

/// Whether a run's item ids are canonical integers in strictly rising
/// order, and the first and last of them — the common case, in which no id
/// repeats and no duplicate check is needed.
#[derive(Clone, Copy, Debug, Default)]
pub struct RisingIds {
    broken: bool,
    span: Option<(u64, u64)>,
}

impl RisingIds {
    /// The next id of the run, as its integer (`None`: not one).
    pub fn see(&mut self, id: Option<u64>) {
        if self.broken {
            return;
        }
        match (id, self.span) {
            (Some(v), None) => self.span = Some((v, v)),
            (Some(v), Some((first, last))) if v > last => self.span = Some((first, v)),
            _ => self.broken = true,
        }
    }

    /// Whether the runs, one after another, rise throughout.
    pub fn chain<'a>(runs: impl Iterator<Item = &'a RisingIds>) -> bool {
        let mut last = None;
        for r in runs {
            if r.broken {
                return false;
            }
            if let Some((first, end)) = r.span {
                if last.is_some_and(|l| first <= l) {
                    return false;
                }
                last = Some(end);
            }
        }
        true
    }
}

/// Parses a run of whole lines, the first of which is line `first`, into
/// `sink`, up to its first bad line or until the sink stops.
fn parse_lines(
    piece: &[u8],
    first: usize,
    layout: Option<&Layout>,
    path: &Path,
    sink: &mut impl ItemSink,
) -> Result<ControlFlow<()>, SidError> {
    let piece = piece.strip_suffix(b"\n").unwrap_or(piece);
    let mut sid = Vec::new();
    // A piece that is UTF-8 as a whole (the common case) is checked once and
    // split as text; otherwise line by line, so that the bad line is named.
    match std::str::from_utf8(piece) {
        Ok(text) => {
            let (mut at, mut lineno) = (0, first);
            while at <= text.len() {
                let end = memchr::memchr(b'\n', &piece[at..]).map_or(text.len(), |p| at + p);
                let line = &text[at..end];
                let line = line.strip_suffix('\r').unwrap_or(line);
                if parse_line(line, lineno, layout, path, &mut sid, sink)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                (at, lineno) = (end + 1, lineno + 1);
            }
        }
        Err(_) => {
            for (k, bytes) in piece.split(|&b| b == b'\n').enumerate() {
                let line = line_text(bytes, first + k, path)?;
                if parse_line(line, first + k, layout, path, &mut sid, sink)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Parses line `lineno` (without its line break) into `sink`; `sid` is scratch.
fn parse_line(
    line: &str,
    lineno: usize,
    layout: Option<&Layout>,
    path: &Path,
    sid: &mut Vec<Token>,
    sink: &mut impl ItemSink,
) -> Result<ControlFlow<()>, SidError> {
    let err = |msg: String| parse_error(path, lineno, msg);
    if line.as_bytes().first() == Some(&b'#') {
        if line.starts_with(HEADER_PREFIX) {
            return Err(err("the #sidx header must be the first line".into()));
        }
        return Ok(ControlFlow::Continue(()));
    }
    if !starts_unspaced(line) && line.trim().is_empty() {
        return Err(err("empty line (expected item_id<TAB>tokens)".into()));
    }
    let tab = memchr::memchr(b'\t', line.as_bytes())
        .ok_or_else(|| err("missing TAB between item id and tokens".into()))?;
    let (id, tokens) = (&line[..tab], &line[tab + 1..]);
    let unspaced = starts_unspaced(id) && id.bytes().last().is_some_and(|b| b.is_ascii_graphic());
    if id.is_empty() || (!unspaced && id.trim().len() != id.len()) {
        return Err(err(format!(
            "item id {id:?} is empty or has surrounding spaces"
        )));
    }
    if !fast_tokens(tokens.as_bytes(), sid) {
        *sid = parse_tokens(tokens).map_err(err)?;
    }
    match layout {
        Some(layout) => {
            for &t in sid.iter() {
                layout.check(t).map_err(err)?;
            }
        }
        None => check_headerless(sid).map_err(err)?,
    }
    Ok(sink.item(lineno, id, sid))
}

/// Whether `text` starts with a printable ASCII character (so no
/// whitespace, of any kind, leads it).
fn starts_unspaced(text: &str) -> bool {
    text.bytes().next().is_some_and(|b| b.is_ascii_graphic())
}

/// Parses the common spelling of tokens — `layer:code` separated by single
/// spaces, layers increasing — into `out`; false for anything else, which
/// [`parse_tokens`] then reads (or explains).
fn fast_tokens(b: &[u8], out: &mut Vec<Token>) -> bool {
    fn number(b: &[u8], start: usize) -> Option<(u64, usize)> {
        let (mut v, mut at) = (0u64, start);
        while let Some(d) = b.get(at).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
            if at - start == 10 {
                return None;
            }
            v = v * 10 + u64::from(d);
            at += 1;
        }
        (at > start).then_some((v, at))
    }
    out.clear();
    let (mut at, mut prev) = (0, 0u64);
    loop {
        let Some((layer, colon)) = number(b, at) else {
            return false;
        };
        if b.get(colon) != Some(&b':') {
            return false;
        }
        let Some((code, end)) = number(b, colon + 1) else {
            return false;
        };
        if layer <= prev || layer > 255 || code > u64::from(u32::MAX) {
            return false;
        }
        out.push(Token::new(layer as u8, code as u32));
        prev = layer;
        match b.get(end) {
            None => return true,
            Some(b' ') => at = end + 1,
            Some(_) => return false,
        }
    }
}

/// Refuses an item id listed twice, naming the line of its second listing
/// (the earliest such line) and of its first.
fn check_unique_ids(table: &SidTable, lines: &[usize], path: &Path) -> Result<(), SidError> {
    match table.duplicate_id() {
        Some((second, first)) => Err(parse_error(
            path,
            lines[second],
            format!(
                "duplicate item id {:?} (first seen on line {})",
                table.id(second),
                lines[first]
            ),
        )),
        None => Ok(()),
    }
}

impl SidTable {
    /// The earliest item whose id an earlier item has, and that earlier one.
    pub fn duplicate_id(&self) -> Option<(usize, usize)> {
        let mut earliest: Option<(usize, usize)> = None;
        for group in super::hash_groups(self.len(), |i| self.id(i)) {
            for (x, &j) in group.iter().enumerate() {
                let first = group[..x].iter().find(|&&i| self.id(i) == self.id(j));
                if let Some(&i) = first
                    && earliest.is_none_or(|(e, _)| j < e)
                {
                    earliest = Some((j, i));
                }
            }
        }
        earliest
    }
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

    /// A file of `n` items, long enough to be parsed in several pieces.
    fn many(n: usize) -> String {
        let header = r#"#sidx {"format":"sidx-sids","version":1,"codebook_sizes":[4096,4096],"collisions":"share"}"#;
        let mut text = format!("{header}\n");
        for i in 0..n {
            text.push_str(&format!("item-{i}\t1:{} 2:{}\n", i % 4096, (i * 7) % 4096));
        }
        text
    }

    #[test]
    fn integer_ids_that_stop_rising_are_checked_for_duplicates() {
        // 0..n/2 twice: each piece but one rises on its own; the repeat is
        // found whether it falls inside a piece or at a boundary.
        let n = 40_000;
        let ids = (0..n / 2).chain(0..n / 2);
        let body: String = ids.map(|i| format!("{i}\t1:{} 2:1\n", i % 4096)).collect();
        let text = many(0) + &body;
        let e = parse(&text).unwrap_err().to_string();
        let second = n / 2 + 2;
        assert!(
            e.starts_with(&format!("s.tsv:{second}:"))
                && e.contains("duplicate item id \"0\" (first seen on line 2)"),
            "{e}"
        );
        // Rising throughout: no duplicate, every item kept.
        let body: String = (0..n)
            .map(|i| format!("{i}\t1:{} 2:1\n", i % 4096))
            .collect();
        assert_eq!(parse(&(many(0) + &body)).unwrap().len(), n);
    }

    #[test]
    fn rising_runs_chain_only_when_each_starts_above_the_last() {
        let run = |span: Option<(u64, u64)>, broken| RisingIds { broken, span };
        let chain = |runs: &[RisingIds]| RisingIds::chain(runs.iter());
        assert!(chain(&[
            run(Some((0, 5)), false),
            run(None, false),
            run(Some((6, 9)), false)
        ]));
        assert!(!chain(&[
            run(Some((0, 5)), false),
            run(Some((5, 9)), false)
        ]));
        assert!(!chain(&[
            run(Some((3, 5)), false),
            run(Some((0, 1)), false)
        ]));
        assert!(!chain(&[run(Some((0, 5)), false), run(Some((6, 9)), true)]));
        assert!(chain(&[]));
    }

    #[test]
    fn pieces_parse_to_the_items_in_file_order() {
        let n = 30_000;
        let text = many(n);
        assert!(split_lines(text.as_bytes(), 8).len() > 4, "several pieces");
        let t = parse(&text).unwrap();
        assert_eq!(t.len(), n);
        for i in [0, 1, 12_345, n - 1] {
            assert_eq!(t.id(i), format!("item-{i}"));
            assert_eq!(
                t.sid(i),
                [
                    Token::new(1, (i % 4096) as u32),
                    Token::new(2, ((i * 7) % 4096) as u32)
                ]
            );
        }
        // Spellings off the fast path: tabs and runs of spaces, CRLF, leading zeros, '+'.
        let odd = "a\t1:1  2:2\r\nb\t 1:01\t2:+3 \n";
        let header = r#"#sidx {"format":"sidx-sids","version":1,"codebook_sizes":[4,4],"collisions":"share"}"#;
        let t = parse(&format!("{header}\n{odd}")).unwrap();
        assert_eq!(t.sid(0), [Token::new(1, 1), Token::new(2, 2)]);
        assert_eq!(t.sid(1), [Token::new(1, 1), Token::new(2, 3)]);
    }

    #[test]
    fn a_duplicate_before_a_bad_line_is_the_error_reported() {
        let e = parse("a\t1:1\na\t1:2\nb\tx\n").unwrap_err().to_string();
        assert!(e.starts_with("s.tsv:2:") && e.contains("duplicate"), "{e}");
        let e = parse("a\t1:1\nb\tx\na\t1:2\n").unwrap_err().to_string();
        assert!(e.starts_with("s.tsv:2:") && e.contains("token"), "{e}");
    }

    #[test]
    fn errors_in_later_pieces_name_their_lines() {
        let n = 30_000;
        let mut lines: Vec<String> = many(n).lines().map(str::to_owned).collect();
        // Line numbers count the header: item i is on line i + 2.
        lines[20_001] = "item-x\t1:5 1:6".into();
        lines[25_001] = "item-y\t1:4096".into();
        let e = parse(&(lines.join("\n") + "\n")).unwrap_err().to_string();
        assert!(
            e.starts_with("s.tsv:20002:") && e.contains("layers must increase"),
            "{e}"
        );
        lines[20_001] = "item-3\t1:5 2:6".into();
        lines[25_001] = "item-10\t1:5 2:6".into();
        let e = parse(&(lines.join("\n") + "\n")).unwrap_err().to_string();
        assert!(
            e.starts_with("s.tsv:20002:")
                && e.contains("duplicate item id \"item-3\" (first seen on line 5)"),
            "{e}"
        );
        // Back to unique ids: the bad byte on the last line is the first error.
        lines[20_001] = "item-20000\t1:5 2:6".into();
        lines[25_001] = "item-25000\t1:5 2:6".into();
        let mut bytes = lines.join("\n").into_bytes();
        let at = bytes.len() - 3;
        bytes[at] = 0xff;
        let e = SidTable::parse(&bytes[..], Path::new("s.tsv"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("s.tsv:{}:", n + 1)) && e.contains("UTF-8"),
            "{e}"
        );
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
