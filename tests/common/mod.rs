//! Shared by the property tests: random variable-length SIDs over a small layout.

use proptest::prelude::*;
use sidx::sid::Token;

/// Codebook sizes of the layout the property tests use.
pub const SIZES: [u32; 3] = [4, 3, 5];

/// A random SID: layers 1 and 3 always, layer 2 sometimes, a disambiguation
/// token (code below `dis_codes`) sometimes.
pub fn sid_strategy(dis_codes: u32) -> impl Strategy<Value = Vec<Token>> {
    (
        0..SIZES[0],
        prop::option::of(0..SIZES[1]),
        0..SIZES[2],
        prop::option::weighted(0.2, 0..dis_codes),
    )
        .prop_map(|(a, b, c, d)| {
            let mut s = vec![Token::new(1, a)];
            if let Some(b) = b {
                s.push(Token::new(2, b));
            }
            s.push(Token::new(3, c));
            if let Some(d) = d {
                s.push(Token::new(4, d));
            }
            s
        })
}
