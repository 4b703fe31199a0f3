//! Crash points for the crash-safety tests. Built with the `failpoints`
//! feature, `SIDX_FAILPOINT=<name>` makes the named point fire; without the
//! feature (every production build) each point is a constant `false`.

/// Whether the failpoint `name` is to fire now.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> bool {
    std::env::var("SIDX_FAILPOINT").is_ok_and(|f| f == name)
}

/// Whether the failpoint `name` is to fire now: never, in this build.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> bool {
    false
}
