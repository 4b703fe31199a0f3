//! Types and service stubs generated from `proto/sidx/v1/*.proto`.

/// Package `sidx.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("sidx.v1");

    /// Encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("sidx_v1_descriptor");
}

/// The largest message the services send by default (`max_response_bytes`)
/// and the clients accept.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Initial HTTP/2 stream window (bytes) of servers and clients; connections
/// get four times as much. Allowed-token lists of a batch can reach megabytes.
pub const WINDOW: u32 = 4 << 20;
