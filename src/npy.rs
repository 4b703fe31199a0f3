//! NumPy `.npy` files of float32 matrices: the format item embeddings arrive in
//! and codebooks are stored in (`np.load` reads them back).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::fsx;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Errors reading or writing `.npy` files; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error(transparent)]
    Io(#[from] fsx::FsError),
}

/// A dense row-major float32 array and its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    /// Rows and columns of a rank-2 array.
    pub fn dims2(&self) -> Option<(usize, usize)> {
        match self.shape[..] {
            [n, d] => Some((n, d)),
            _ => None,
        }
    }
}

/// Reads a float32 `[N, D]` matrix, refusing anything else with a clear message.
pub fn read_matrix(path: &Path) -> Result<(Vec<f32>, usize, usize), NpyError> {
    let array = read(path)?;
    let (n, d) = array.dims2().ok_or_else(|| NpyError::Format {
        path: path.to_owned(),
        msg: format!(
            "expected a rank-2 array [items, dim], got shape {:?}",
            array.shape
        ),
    })?;
    Ok((array.data, n, d))
}

/// Reads a C-ordered float32 array of any rank.
pub fn read(path: &Path) -> Result<Array, NpyError> {
    let file = File::open(path).map_err(|e| fsx::FsError::new(path, "open", e))?;
    let file_len = file
        .metadata()
        .map_err(|e| fsx::FsError::new(path, "stat", e))?
        .len();
    read_from(BufReader::new(file), file_len, path)
}

/// A `.npy` header: the dtype, the shape, where the data starts.
struct Header {
    descr: String,
    shape: Vec<usize>,
    count: usize,
    prefix_len: u64,
}

/// Reads the magic and header of a `.npy` file of `file_len` bytes from `r`
/// (C order only); the header's length is checked before it is allocated.
fn read_header(r: &mut impl Read, file_len: u64, path: &Path) -> Result<Header, NpyError> {
    let err = |msg: String| NpyError::Format {
        path: path.to_owned(),
        msg,
    };
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| err("too short for a .npy file".into()))?;
    if &pre[..6] != MAGIC {
        return Err(err("not a .npy file (bad magic)".into()));
    }
    let header_len = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)
                .map_err(|_| err("truncated header".into()))?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)
                .map_err(|_| err("truncated header".into()))?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(err(format!("unsupported .npy version {v}"))),
    };
    let prefix_len = (8 + if pre[6] == 1 { 2 } else { 4 } + header_len) as u64;
    if prefix_len > file_len {
        return Err(err(format!(
            "header of {header_len} bytes runs past the end of the {file_len}-byte file (truncated)"
        )));
    }
    let mut header = vec![0u8; header_len];
    r.read_exact(&mut header)
        .map_err(|_| err("truncated header".into()))?;
    let header = String::from_utf8_lossy(&header);
    let descr = dict_value(&header, "descr")
        .and_then(quoted)
        .ok_or_else(|| err("header lacks a readable 'descr'".into()))?
        .to_owned();
    if dict_value(&header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(err(
            "Fortran-ordered arrays are not supported; save np.ascontiguousarray(arr)".into(),
        ));
    }
    let shape = dict_value(&header, "shape")
        .and_then(parse_shape)
        .ok_or_else(|| err("header has no readable 'shape'".into()))?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| err(format!("shape {shape:?} overflows")))?;
    Ok(Header {
        descr,
        shape,
        count,
        prefix_len,
    })
}

/// Checks that the file holds exactly the header's elements of `width` bytes.
fn check_len(h: &Header, width: u64, file_len: u64, path: &Path) -> Result<(), NpyError> {
    let err = |msg: String| NpyError::Format {
        path: path.to_owned(),
        msg,
    };
    let expected = (h.count as u64)
        .checked_mul(width)
        .and_then(|b| b.checked_add(h.prefix_len))
        .ok_or_else(|| err(format!("shape {:?} overflows", h.shape)))?;
    if expected != file_len {
        return Err(err(format!(
            "file is {file_len} bytes, shape {:?} of {} needs {expected} (truncated or trailing data)",
            h.shape, h.descr
        )));
    }
    Ok(())
}

/// Reads a `.npy` array of `file_len` bytes from `r`; errors name `path`.
/// The data size is checked against `file_len` before anything is allocated.
pub fn read_from(mut r: impl Read, file_len: u64, path: &Path) -> Result<Array, NpyError> {
    let err = |msg: String| NpyError::Format {
        path: path.to_owned(),
        msg,
    };
    let h = read_header(&mut r, file_len, path)?;
    let swap = match h.descr.as_str() {
        "<f4" | "|f4" => cfg!(target_endian = "big"),
        ">f4" => cfg!(target_endian = "little"),
        other => {
            return Err(err(format!(
                "dtype {other} is not float32 (<f4); convert with arr.astype('float32')"
            )));
        }
    };
    check_len(&h, 4, file_len, path)?;
    let mut data = vec![0f32; h.count];
    r.read_exact(bytemuck::cast_slice_mut(&mut data))
        .map_err(|e| err(format!("cannot read data: {e}")))?;
    if swap {
        for v in &mut data {
            *v = f32::from_bits(v.to_bits().swap_bytes());
        }
    }
    Ok(Array {
        shape: h.shape,
        data,
    })
}

/// Reads a rank-2 little-endian integer array `[N, L]` (int8 … uint64, as
/// numpy saves quantizer codes) as `u32`s; a negative value or one above
/// `u32::MAX` is refused naming its row and column.
pub fn read_codes(path: &Path) -> Result<(Vec<u32>, usize, usize), NpyError> {
    let err = |msg: String| NpyError::Format {
        path: path.to_owned(),
        msg,
    };
    let file = File::open(path).map_err(|e| fsx::FsError::new(path, "open", e))?;
    let file_len = file
        .metadata()
        .map_err(|e| fsx::FsError::new(path, "stat", e))?
        .len();
    let mut r = BufReader::new(file);
    let h = read_header(&mut r, file_len, path)?;
    let (n, l) = match h.shape[..] {
        [n, l] => (n, l),
        _ => {
            return Err(err(format!(
                "expected a rank-2 array of codes [items, layers], got shape {:?}",
                h.shape
            )));
        }
    };
    let (width, signed) = match h.descr.as_str() {
        "|i1" | "<i1" => (1, true),
        "|u1" | "<u1" => (1, false),
        "<i2" => (2, true),
        "<u2" => (2, false),
        "<i4" => (4, true),
        "<u4" => (4, false),
        "<i8" => (8, true),
        "<u8" => (8, false),
        other => {
            return Err(err(format!(
                "dtype {other} is not a little-endian integer (int8 … uint64); convert with arr.astype('int32')"
            )));
        }
    };
    check_len(&h, width, file_len, path)?;
    let mut bytes = vec![0u8; h.count * width as usize];
    r.read_exact(&mut bytes)
        .map_err(|e| err(format!("cannot read data: {e}")))?;
    let w = width as usize;
    let mut codes = Vec::with_capacity(h.count);
    for (k, v) in bytes.chunks_exact(w).enumerate() {
        let mut b = [0u8; 8];
        b[..w].copy_from_slice(v);
        // Sign-extend negative values of signed types.
        if signed && v[w - 1] & 0x80 != 0 {
            b[w..].fill(0xff);
        }
        let value = if signed {
            i128::from(i64::from_le_bytes(b))
        } else {
            i128::from(u64::from_le_bytes(b))
        };
        let code = u32::try_from(value).map_err(|_| {
            err(format!(
                "row {}, column {}: code {value} is not in 0..=4294967295",
                k / l.max(1),
                k % l.max(1)
            ))
        })?;
        codes.push(code);
    }
    Ok((codes, n, l))
}

/// The text after `'key':` in a header dict, up to the end of the dict.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}':"))
        .or_else(|| header.find(&format!("\"{key}\":")))?;
    Some(header[at + key.len() + 3..].trim_start())
}

/// The contents of a leading `'…'` or `"…"` string.
fn quoted(v: &str) -> Option<&str> {
    let q = v.chars().next().filter(|&c| c == '\'' || c == '"')?;
    let rest = &v[1..];
    Some(&rest[..rest.find(q)?])
}

fn parse_shape(v: &str) -> Option<Vec<usize>> {
    let inner = v.strip_prefix('(')?;
    let inner = &inner[..inner.find(')')?];
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

/// Writes a C-ordered float32 array (version 1.0 header), atomically.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    fsx::write_atomic(path, |w| write_to(w, shape, data))?;
    Ok(())
}

/// Writes the `.npy` bytes of a float32 array to any writer.
pub fn write_to(w: &mut dyn Write, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    write_array(w, "<f4", shape, data)
}

/// Writes the `.npy` bytes of a uint32 array (quantizer codes `[N, L]`, as
/// [`read_codes`] reads them) to any writer.
pub fn write_codes_to(w: &mut dyn Write, shape: &[usize], data: &[u32]) -> std::io::Result<()> {
    write_array(w, "<u4", shape, data)
}

/// A version 1.0 header (data 64-byte aligned) and the 4-byte values,
/// little-endian.
fn write_array<T: bytemuck::Pod>(
    w: &mut dyn Write,
    descr: &str,
    shape: &[usize],
    data: &[T],
) -> std::io::Result<()> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape must match data"
    );
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let shape_str = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_str}, }}");
    // Pad so that data starts 64-byte aligned; the header ends with '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    w.write_all(MAGIC)?;
    w.write_all(&[1, 0])?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    let bytes: &[u8] = bytemuck::cast_slice(data);
    if cfg!(target_endian = "little") {
        w.write_all(bytes)
    } else {
        bytes.chunks_exact(4).try_for_each(|v| {
            let [a, b, c, d] = [v[0], v[1], v[2], v[3]];
            w.write_all(&[d, c, b, a])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_through_read_codes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("codes.npy");
        let codes = [0, 4095, 7, u32::MAX, 1, 2];
        fsx::write_atomic(&p, |w| write_codes_to(w, &[2, 3], &codes)).unwrap();
        assert_eq!(read_codes(&p).unwrap(), (codes.to_vec(), 2, 3));
    }

    #[test]
    fn roundtrip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write(&p, &[2, 3], &[1., 2., 3., 4., 5., 6.]).unwrap();
        let (data, n, d) = read_matrix(&p).unwrap();
        assert_eq!((n, d), (2, 3));
        assert_eq!(data[5], 6.0);
        let header_len = std::fs::metadata(&p).unwrap().len() - 6 * 4;
        assert_eq!(header_len % 64, 0, "data is 64-byte aligned");

        write(&p, &[6], &[0.; 6]).unwrap();
        let e = read_matrix(&p).unwrap_err().to_string();
        assert!(e.contains("rank-2") && e.contains("a.npy"), "{e}");

        let mut bytes = std::fs::read(dir.path().join("a.npy")).unwrap();
        bytes.pop();
        std::fs::write(&p, &bytes).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");

        let mut f8 = Vec::new();
        write_to(&mut f8, &[1, 1], &[0.0]).unwrap();
        let pos = f8.windows(3).position(|w| w == b"<f4").unwrap();
        f8[pos + 2] = b'8';
        std::fs::write(&p, &f8).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("not float32"), "{e}");
    }

    fn with_shape(shape: &str) -> Vec<u8> {
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b
    }

    fn typed(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut b = with_shape(shape);
        let at = b.windows(3).position(|w| w == b"<f4").unwrap();
        let mut header = String::from_utf8(b[10..].to_vec()).unwrap();
        header.replace_range(at - 10..at - 7, descr);
        b.truncate(8);
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn integer_codes_of_every_width_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("codes.npy");
        let values: [i64; 4] = [0, 7, 255, 1];
        let cases: [(&str, usize); 8] = [
            ("|u1", 1),
            ("|i1", 1),
            ("<u2", 2),
            ("<i2", 2),
            ("<u4", 4),
            ("<i4", 4),
            ("<u8", 8),
            ("<i8", 8),
        ];
        for (descr, w) in cases {
            let mut data = Vec::new();
            for v in values {
                data.extend_from_slice(&v.to_le_bytes()[..w]);
            }
            std::fs::write(&p, typed(descr, "(2, 2)", &data)).unwrap();
            let r = read_codes(&p);
            if descr == "|i1" {
                // 255 is -1 as int8.
                let e = r.unwrap_err().to_string();
                assert!(e.contains("row 1, column 0: code -1"), "{descr}: {e}");
            } else {
                assert_eq!(r.unwrap(), (vec![0, 7, 255, 1], 2, 2), "{descr}");
            }
        }
        let too_big = (u64::from(u32::MAX) + 1).to_le_bytes();
        std::fs::write(&p, typed("<u8", "(1, 1)", &too_big)).unwrap();
        let e = read_codes(&p).unwrap_err().to_string();
        assert!(e.contains("codes.npy") && e.contains("4294967296"), "{e}");
        std::fs::write(&p, typed("<f4", "(1, 1)", &[0; 4])).unwrap();
        let e = read_codes(&p).unwrap_err().to_string();
        assert!(e.contains("not a little-endian integer"), "{e}");
        std::fs::write(&p, typed("<i4", "(4,)", &[0; 16])).unwrap();
        let e = read_codes(&p).unwrap_err().to_string();
        assert!(e.contains("rank-2"), "{e}");
        std::fs::write(&p, typed("<i4", "(2, 2)", &[0; 12])).unwrap();
        let e = read_codes(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn overflowing_shapes_are_errors_not_panics() {
        // (2**62, 1) once wrapped `count * 4` to 0 and allocated 2**62 floats.
        for shape in [
            "(4611686018427387904, 1)",
            "(2147483648, 2147483648)",
            "(18446744073709551615, 2)",
        ] {
            let b = with_shape(shape);
            let e = read_from(&b[..], b.len() as u64, Path::new("x.npy"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("x.npy") && e.contains("overflows"),
                "{shape}: {e}"
            );
        }
        let b = with_shape("(1000, 1000)");
        let e = read_from(&b[..], b.len() as u64, Path::new("x.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs"), "{e}");
    }

    #[test]
    fn header_lengths_past_the_file_are_errors_not_allocations() {
        // A version-2 header length of ~1.7 GB once allocated before reading (fuzz: npy).
        let b = b"\x93NUMPY\x02\x27\x64\x55\x27\x64";
        let e = read_from(&b[..], b.len() as u64, Path::new("x.npy"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.npy") && e.contains("runs past the end"),
            "{e}"
        );
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[2, 0]);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = read_from(&b[..], b.len() as u64, Path::new("x.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("runs past the end"), "{e}");
    }
}
