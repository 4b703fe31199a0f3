//! Types and service stubs generated from `proto/sidx/v1/*.proto`.

/// Package `sidx.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("sidx.v1");

    /// Encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("sidx_v1_descriptor");
}
