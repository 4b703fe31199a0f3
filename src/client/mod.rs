//! gRPC clients of the sidx services: one way to build a channel (address
//! or URL, timeouts, TLS, HTTP/2 windows and message limits as the servers
//! use them), and the index mirror that follows `sidx serve index`.

pub mod catalog;
pub mod mirror;

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::proto::v1::generator_service_client::GeneratorServiceClient;
use crate::proto::v1::index_service_client::IndexServiceClient;
use crate::proto::{MAX_MESSAGE_BYTES, WINDOW};

/// Why a channel could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {message}")]
pub struct ConnectError {
    pub url: String,
    pub message: String,
}

/// How to reach a sidx service.
#[derive(Clone, Debug)]
pub struct Connect {
    url: String,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    tls_ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Connect {
    /// `host:port` (plain HTTP/2) or a full `http://` / `https://` URL.
    pub fn new(addr: &str) -> Self {
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        Connect {
            url,
            connect_timeout: Duration::from_secs(5),
            timeout: None,
            tls_ca: None,
            identity: None,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Deadline of every call made on the channel.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Trust this CA (PEM) for an `https://` service.
    pub fn tls_ca(mut self, pem: Vec<u8>) -> Self {
        self.tls_ca = Some(pem);
        self
    }

    /// Present this certificate and key (PEM) to a service that requires mutual TLS.
    pub fn identity(mut self, cert: Vec<u8>, key: Vec<u8>) -> Self {
        self.identity = Some((cert, key));
        self
    }

    fn error(&self, e: impl std::fmt::Display) -> ConnectError {
        ConnectError {
            url: self.url.clone(),
            message: e.to_string(),
        }
    }

    /// The endpoint, not yet connected.
    pub fn endpoint(&self) -> Result<Endpoint, ConnectError> {
        let mut e = Endpoint::from_shared(self.url.clone())
            .map_err(|e| self.error(e))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(WINDOW))
            .initial_connection_window_size(Some(4 * WINDOW));
        if let Some(t) = self.timeout {
            e = e.timeout(t);
        }
        if self.tls_ca.is_some() || self.identity.is_some() {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.tls_ca {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            e = e.tls_config(tls).map_err(|e| self.error(e))?;
        }
        Ok(e)
    }

    /// Connects now.
    pub async fn channel(&self) -> Result<Channel, ConnectError> {
        self.endpoint()?
            .connect()
            .await
            .map_err(|e| self.error(format!("{e} ({e:?})")))
    }
}

/// An index service client accepting responses as large as the servers send.
pub fn index_client(channel: Channel) -> IndexServiceClient<Channel> {
    IndexServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES)
}

/// A generator service client accepting responses as large as the servers send.
pub fn generator_client(channel: Channel) -> GeneratorServiceClient<Channel> {
    GeneratorServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES)
}
