//! A small mTLS HTTP/1.1 client for paotui: used by `paotui demo`, the end-to-end tests
//! and (later) the load generator. It verifies response signatures with the JWK set.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use paotui_certs::httpsig::{self, MessageView, Verified};
use paotui_certs::{Jwks, tls};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{Error, Result};

fn client_err(e: impl std::fmt::Display) -> Error {
    Error::Client(e.to_string())
}

#[derive(Clone)]
pub struct MtlsClient {
    connector: TlsConnector,
    addr: SocketAddr,
    host: String,
    server_name: ServerName<'static>,
}

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(client_err)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks the RFC 9421 signature and `Content-Digest`; returns the audit index.
    pub fn verify(&self, jwks: &Jwks) -> Result<(Verified, u64)> {
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
            .collect();
        let view = MessageView {
            status: Some(self.status.as_u16()),
            headers: pairs,
            ..Default::default()
        };
        Ok(httpsig::verify_response(jwks, &view, &self.body)?)
    }
}

impl MtlsClient {
    /// `identity`: (certificate, key) PEM files of a system; `None` connects without one.
    pub fn new(
        ca: &Path,
        identity: Option<(&Path, &Path)>,
        addr: SocketAddr,
        host: &str,
    ) -> Result<Self> {
        let cfg = tls::client_config(ca, identity)?;
        Ok(MtlsClient {
            connector: TlsConnector::from(cfg),
            addr,
            host: host.to_owned(),
            server_name: ServerName::try_from(host.to_owned()).map_err(client_err)?,
        })
    }

    /// Opens one kept-alive connection.
    pub async fn connect(&self) -> Result<Conn> {
        let tcp = TcpStream::connect(self.addr).await.map_err(client_err)?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(client_err)?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(client_err)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            authority: format!("{}:{}", self.host, self.addr.port()),
        })
    }

    /// One request on a fresh connection.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply> {
        self.connect()
            .await?
            .send(method, path, headers, body)
            .await
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send(Method::GET, path, &[], vec![]).await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<Reply> {
        self.post_json_with(path, body, &[]).await
    }

    /// [`MtlsClient::post_json`] with more headers (e.g. `paotui-operator`).
    pub async fn post_json_with(
        &self,
        path: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let bytes = serde_json::to_vec(body).map_err(client_err)?;
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(Method::POST, path, &all, bytes).await
    }

    /// Fetches `/v1/keys` (and checks that answer's own signature with the keys it holds).
    pub async fn keys(&self) -> Result<Jwks> {
        let r = self.get("/v1/keys").await?;
        if !r.status.is_success() {
            return Err(client_err(format!("GET /v1/keys answered {}", r.status)));
        }
        let jwks: Jwks = serde_json::from_slice(&r.body).map_err(client_err)?;
        r.verify(&jwks)?;
        Ok(jwks)
    }
}

pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl Conn {
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.authority);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(client_err)?;
        self.sender.ready().await.map_err(client_err)?;
        let resp = self.sender.send_request(req).await.map_err(client_err)?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(client_err)?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Convenience for a JSON POST over a kept-alive connection.
pub fn json_headers() -> [(&'static str, &'static str); 1] {
    [("content-type", "application/json")]
}
