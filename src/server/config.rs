//! Service configuration: a TOML file (`--config`), then command-line flags
//! on top. Every limit has a production default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Limits and endpoints of a gRPC service.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub addr: SocketAddr,
    /// Prometheus `/metrics` listen address; none = no metrics endpoint.
    pub metrics_addr: Option<SocketAddr>,
    /// Largest request message accepted (bytes).
    pub max_request_bytes: usize,
    /// Largest response message sent (bytes).
    pub max_response_bytes: usize,
    /// Most prefixes / SIDs / item ids in one batched request.
    pub max_batch: usize,
    /// Most changes in one catalog update stream.
    pub max_update_changes: usize,
    /// Server-side deadline of a unary request (ms).
    pub request_timeout_ms: u64,
    /// Requests served at once across all connections; more are shed with RESOURCE_EXHAUSTED.
    pub max_concurrent_requests: usize,
    /// HTTP/2 keepalive ping interval (s; 0 = off) and ack timeout (s).
    pub keepalive_interval_s: u64,
    pub keepalive_timeout_s: u64,
    /// Connections are closed gracefully after this age (s; 0 = never), spreading clients over replicas.
    pub max_connection_age_s: u64,
    /// After SIGTERM: how long in-flight requests may take to finish (s).
    pub drain_timeout_s: u64,
    /// How often to look for versions published by other processes (ms).
    pub reload_interval_ms: u64,
    /// Versions kept for rollback (at least 2).
    pub keep_versions: usize,
    /// Token required (as `authorization: Bearer …`) by admin RPCs; none = admin RPCs refused.
    pub admin_token: Option<String>,
    /// Token required by the replication RPCs (FetchVersion, WatchVersions),
    /// which the admin token also opens; none = they need no token.
    pub replication_token: Option<String>,
    /// FetchVersion streams open at once; more are RESOURCE_EXHAUSTED.
    pub max_fetch_streams: usize,
    /// WatchVersions streams open at once; more are RESOURCE_EXHAUSTED.
    pub max_watch_streams: usize,
    /// A FetchVersion stream whose reader takes no data for this long is ended (s).
    pub fetch_stall_timeout_s: u64,
    pub tls: Option<TlsConfig>,
}

/// Server TLS; with `client_ca`, clients must present a certificate it signed (mTLS).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:50051".parse().expect("valid"),
            metrics_addr: None,
            max_request_bytes: 4 << 20,
            max_response_bytes: crate::proto::MAX_MESSAGE_BYTES,
            max_batch: 4096,
            max_update_changes: 1_000_000,
            request_timeout_ms: 5_000,
            max_concurrent_requests: 256,
            keepalive_interval_s: 30,
            keepalive_timeout_s: 10,
            max_connection_age_s: 1800,
            drain_timeout_s: 20,
            reload_interval_ms: 1000,
            keep_versions: 3,
            admin_token: None,
            replication_token: None,
            max_fetch_streams: 4,
            max_watch_streams: 64,
            fetch_stall_timeout_s: 30,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file; unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses TOML text; unknown keys are errors.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_request_bytes", self.max_request_bytes),
            ("max_response_bytes", self.max_response_bytes),
            ("max_batch", self.max_batch),
            ("max_update_changes", self.max_update_changes),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("keep_versions", self.keep_versions),
            ("max_fetch_streams", self.max_fetch_streams),
            ("max_watch_streams", self.max_watch_streams),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("config: {name} must be at least 1"));
            }
        }
        if self.request_timeout_ms == 0 {
            return Err("config: request_timeout_ms must be at least 1".into());
        }
        for (name, token) in [
            ("admin_token", &self.admin_token),
            ("replication_token", &self.replication_token),
        ] {
            if token.as_deref().is_some_and(|t| t.len() < 16) {
                return Err(format!("config: {name} must be at least 16 characters"));
            }
        }
        if self.fetch_stall_timeout_s == 0 {
            return Err("config: fetch_stall_timeout_s must be at least 1".into());
        }
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "addr = \"0.0.0.0:7000\"\nmax_batch = 8\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        )
        .unwrap();
        let c = ServerConfig::from_file(&p).unwrap();
        assert_eq!(c.addr.port(), 7000);
        assert_eq!(c.max_batch, 8);
        assert_eq!(c.max_concurrent_requests, 256, "default kept");
        assert_eq!(c.tls.unwrap().client_ca, None);
        std::fs::write(&p, "max_bach = 8\n").unwrap();
        let e = ServerConfig::from_file(&p).unwrap_err();
        assert!(e.contains("c.toml") && e.contains("max_bach"), "{e}");
        let bad = ServerConfig {
            max_batch: 0,
            ..ServerConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("max_batch"));
    }
}
