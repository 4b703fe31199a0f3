//! Hourglass diagnostics of SID sets (how concentrated each layer's tokens
//! are, how sparse the code tree is) and the paper's mitigations.

pub mod compare;
mod mitigate;
mod report;
mod stats;
mod svg;

pub use crate::sid::Strategy;
pub use mitigate::{MitigateError, mitigate};
pub use report::{
    CodeCount, DEFAULT_HEAD_SHARE, HeadTail, HourglassReport, LengthCount, MitigationSummary,
    PathStats, head_tail,
};
pub use stats::{LayerStats, entropy_bits, gini, std_dev};
pub use svg::render as render_svg;
