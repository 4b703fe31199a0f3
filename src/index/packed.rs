//! Fixed-width unsigned integers packed into little-endian `u64` words:
//! element `i` of width `w` occupies bits `i·w .. (i+1)·w`, so a section is
//! `ceil(len·w / 64)` words and is read in place from a memory map.

/// Bits needed to store every value up to `max` (0 for `max == 0`).
pub fn width_for(max: u64) -> u32 {
    u64::BITS - max.leading_zeros()
}

/// Words of a packed section of `len` elements of `width` bits.
pub fn words_for(len: u64, width: u32) -> Option<u64> {
    len.checked_mul(u64::from(width))
        .map(|bits| bits.div_ceil(64))
}

fn mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// Element `i` of a packed section; the section's length was checked at open,
/// so an element past its end is a bug of ours (a panic, never a wrong read).
#[inline]
pub fn get(words: &[u64], width: u32, i: u64) -> u64 {
    if width == 0 {
        return 0;
    }
    let bit = i * u64::from(width);
    let (w, off) = ((bit / 64) as usize, (bit % 64) as u32);
    let lo = words[w] >> off;
    let v = if off + width > 64 {
        lo | words[w + 1] << (64 - off)
    } else {
        lo
    };
    v & mask(width)
}

/// Sets element `i` (zero until now) of a packed section to `v`.
#[inline]
pub fn set(words: &mut [u64], width: u32, i: u64, v: u64) {
    debug_assert!(v & !mask(width) == 0, "{v} does not fit {width} bits");
    if width == 0 {
        return;
    }
    let bit = i * u64::from(width);
    let (w, off) = ((bit / 64) as usize, (bit % 64) as u32);
    words[w] |= v << off;
    if off + width > 64 {
        words[w + 1] |= v >> (64 - off);
    }
}

/// Builds a packed section element by element.
pub struct PackedWriter {
    words: Vec<u64>,
    width: u32,
    bits: u64,
}

impl PackedWriter {
    pub fn with_capacity(width: u32, len: usize) -> Self {
        let words = words_for(len as u64, width).unwrap_or(0) as usize;
        Self {
            words: Vec::with_capacity(words),
            width,
            bits: 0,
        }
    }

    /// Appends `v`, which must fit the width (checked in debug builds).
    #[inline]
    pub fn push(&mut self, v: u64) {
        debug_assert!(
            v & !mask(self.width) == 0,
            "{v} does not fit {} bits",
            self.width
        );
        if self.width == 0 {
            return;
        }
        let off = (self.bits % 64) as u32;
        if off == 0 {
            self.words.push(v);
        } else {
            *self.words.last_mut().expect("a partly filled word") |= v << off;
            if off + self.width > 64 {
                self.words.push(v >> (64 - off));
            }
        }
        self.bits += u64::from(self.width);
    }

    pub fn finish(self) -> Vec<u64> {
        self.words
    }
}

/// Packs a whole sequence.
pub fn pack(values: impl ExactSizeIterator<Item = u64>, width: u32) -> Vec<u64> {
    let mut w = PackedWriter::with_capacity(width, values.len());
    values.for_each(|v| w.push(v));
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_width() {
        for width in 0..=64u32 {
            let m = mask(width);
            let values: Vec<u64> = (0..300u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & m)
                .collect();
            let words = pack(values.iter().copied(), width);
            assert_eq!(
                words.len() as u64,
                words_for(300, width).unwrap(),
                "width {width}"
            );
            let mut set_words = vec![0u64; words.len()];
            for (i, &v) in values.iter().enumerate() {
                assert_eq!(
                    get(&words, width, i as u64),
                    v,
                    "width {width}, element {i}"
                );
                set(&mut set_words, width, i as u64, v);
            }
            assert_eq!(set_words, words, "width {width}: set and pack agree");
        }
    }

    #[test]
    fn widths() {
        assert_eq!(width_for(0), 0);
        assert_eq!(width_for(1), 1);
        assert_eq!(width_for(255), 8);
        assert_eq!(width_for(256), 9);
        assert_eq!(width_for(u64::MAX), 64);
    }
}
