//! The one place where library errors become gRPC status codes: one
//! exhaustive conversion per error type, so a new variant cannot reach a
//! client without someone deciding its code.

use tonic::Status;

use crate::fsx::FsError;
use crate::generate::GenerateError;
use crate::index::IndexError;
use crate::npy::NpyError;
use crate::quantize::QuantizeError;
use crate::sid::SidError;

use super::validate::RequestError;

impl From<IndexError> for Status {
    fn from(e: IndexError) -> Self {
        let msg = e.to_string();
        match e {
            IndexError::Input(_) | IndexError::Query(_) => Status::invalid_argument(msg),
            IndexError::UnknownItem { .. } | IndexError::UnknownVersion(_) => {
                Status::not_found(msg)
            }
            IndexError::SidTaken { .. } => Status::already_exists(msg),
            IndexError::NoVersion(_) => Status::failed_precondition(msg),
            IndexError::Corrupt { .. } | IndexError::Fst { .. } => Status::data_loss(msg),
            IndexError::Cancelled => Status::cancelled(msg),
            IndexError::Io { .. } | IndexError::Internal(_) => Status::internal(msg),
            IndexError::Fs(e) => e.into(),
            IndexError::Sid(e) => e.into(),
            IndexError::Quantize(e) => e.into(),
        }
    }
}

impl From<SidError> for Status {
    fn from(e: SidError) -> Self {
        let msg = e.to_string();
        match e {
            SidError::Parse { .. } | SidError::File { .. } | SidError::Layout(_) => {
                Status::invalid_argument(msg)
            }
            SidError::Npy(NpyError::Format { .. }) => Status::invalid_argument(msg),
            SidError::Npy(NpyError::Io(e)) | SidError::Io(e) => e.into(),
        }
    }
}

impl From<QuantizeError> for Status {
    fn from(e: QuantizeError) -> Self {
        let msg = e.to_string();
        match e {
            QuantizeError::Config(_) | QuantizeError::Input { .. } => Status::invalid_argument(msg),
            QuantizeError::Npy(NpyError::Format { .. }) => Status::invalid_argument(msg),
            QuantizeError::Npy(NpyError::Io(e)) | QuantizeError::Io(e) => e.into(),
        }
    }
}

impl From<FsError> for Status {
    fn from(e: FsError) -> Self {
        Status::internal(e.to_string())
    }
}

impl From<GenerateError> for Status {
    fn from(e: GenerateError) -> Self {
        let msg = e.to_string();
        match e {
            GenerateError::InvalidArgument(_) => Status::invalid_argument(msg),
            GenerateError::IndexMismatch(_) => Status::failed_precondition(msg),
            GenerateError::Overloaded(_) => Status::resource_exhausted(msg),
            GenerateError::DeadlineExceeded(_) => Status::deadline_exceeded(msg),
            GenerateError::Stopped => Status::unavailable(msg),
            GenerateError::Runtime(_)
            | GenerateError::Model { .. }
            | GenerateError::Sidecar { .. }
            | GenerateError::Inference(_) => Status::internal(msg),
        }
    }
}

impl From<RequestError> for Status {
    fn from(e: RequestError) -> Self {
        let msg = e.to_string();
        match e {
            RequestError::Invalid { .. } => Status::invalid_argument(msg),
            RequestError::VersionNotServed { .. } => Status::failed_precondition(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use tonic::Code;

    #[test]
    fn each_error_gets_its_code_and_keeps_its_message() {
        let io = || std::io::Error::other("disk on fire");
        let cases: Vec<(Status, Code)> = vec![
            (
                IndexError::Input("bad".into()).into(),
                Code::InvalidArgument,
            ),
            (
                IndexError::UnknownItem {
                    field: "deletes, entry 1".into(),
                    id: "x".into(),
                }
                .into(),
                Code::NotFound,
            ),
            (IndexError::UnknownVersion(7).into(), Code::NotFound),
            (
                IndexError::SidTaken {
                    field: "f".into(),
                    sid: "1:1".into(),
                    holder: "h".into(),
                }
                .into(),
                Code::AlreadyExists,
            ),
            (
                IndexError::corrupt(&PathBuf::from("m.json"), "checksum").into(),
                Code::DataLoss,
            ),
            (IndexError::Cancelled.into(), Code::Cancelled),
            (IndexError::Internal("join".into()).into(), Code::Internal),
            (
                IndexError::io(&PathBuf::from("f"), io()).into(),
                Code::Internal,
            ),
            (
                IndexError::Sid(SidError::Io(FsError::new(
                    &PathBuf::from("s"),
                    "read",
                    io(),
                )))
                .into(),
                Code::Internal,
            ),
            (
                IndexError::Quantize(QuantizeError::Npy(NpyError::Format {
                    path: "c.npy".into(),
                    msg: "rank".into(),
                }))
                .into(),
                Code::InvalidArgument,
            ),
            (GenerateError::Stopped.into(), Code::Unavailable),
            (
                RequestError::VersionNotServed {
                    asked: 2,
                    serving: 1,
                }
                .into(),
                Code::FailedPrecondition,
            ),
        ];
        for (status, code) in cases {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(!status.message().is_empty());
        }
        let s: Status = IndexError::io(&PathBuf::from("trie.bin"), io()).into();
        assert!(s.message().contains("trie.bin") && s.message().contains("disk on fire"));
    }
}
