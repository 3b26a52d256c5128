//! An existing department REST API (JSON over HTTP) as a source.
//!
//! Each query calls the upstream once: `GET <url>?<param>=<value>…`, one query parameter
//! per catalog placeholder (`subject` included). The answer — a JSON array of objects, or
//! one found at `rows_at` (a JSON pointer) — becomes the table `table` with the declared
//! `columns` (fields not declared are never loaded), and the catalog's SQL selects from it
//! in DataFusion. GET only: the gateway never sends anything that could change upstream.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::record_batch::RecordBatch;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use paotui_policies::catalog::{ParamValue, placeholders};

use crate::engine::{self, ColumnType};
use crate::source::{BoxFuture, DataSource, Rows, SourceLimits, with_timeout};
use crate::{Error, Result};

/// Largest upstream answer read (bytes); more is refused, not truncated.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// A JSON-over-HTTP upstream.
#[derive(Clone)]
pub struct HttpSource {
    name: String,
    url: url::Url,
    table: String,
    rows_at: Option<String>,
    bearer: Option<String>,
    schema: Arc<Schema>,
    client: Client<HttpConnector, Empty<Bytes>>,
    limits: SourceLimits,
}

// By hand: the bearer token must never reach a log line.
impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// How to reach and read an upstream.
#[derive(Clone)]
pub struct HttpOptions {
    /// `http://host:port/path`; parameters are appended as a query string.
    pub url: String,
    /// The table name the catalog's SQL selects from.
    pub table: String,
    /// The declared columns and their types (at least one).
    pub columns: BTreeMap<String, ColumnType>,
    /// JSON pointer to the array of rows when it is not the whole answer (`/data`).
    pub rows_at: Option<String>,
    /// A bearer token sent as `Authorization` (from the environment, never a file).
    pub bearer: Option<String>,
}

impl HttpSource {
    pub fn new(name: &str, opts: HttpOptions, limits: SourceLimits) -> Result<Self> {
        let bad = |detail: String| Error::Query {
            source_name: name.to_owned(),
            detail,
        };
        let url =
            url::Url::parse(&opts.url).map_err(|e| bad(format!("bad url {:?}: {e}", opts.url)))?;
        if url.scheme() != "http" {
            return Err(bad(format!(
                "url {:?}: only http:// upstreams are supported (put a TLS-terminating proxy on the department side for https)",
                opts.url
            )));
        }
        if opts.columns.is_empty() {
            return Err(bad("an http source must declare its columns".into()));
        }
        let schema = Arc::new(Schema::new(
            opts.columns
                .iter()
                .map(|(n, t)| Field::new(n, t.arrow(), true))
                .collect::<Vec<_>>(),
        ));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.statement_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(8)
            .build(connector);
        Ok(HttpSource {
            name: name.to_owned(),
            url,
            table: opts.table,
            rows_at: opts.rows_at,
            bearer: opts.bearer,
            schema,
            client,
            limits,
        })
    }

    fn unavailable(&self, detail: impl Into<String>) -> Error {
        Error::Unavailable {
            source_name: self.name.clone(),
            detail: detail.into(),
        }
    }

    fn bad_answer(&self, detail: impl Into<String>) -> Error {
        Error::Query {
            source_name: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// Sends a request (with the bearer token, if any); no answer at all is "unavailable".
    async fn send(&self, req: http::request::Builder) -> Result<http::Response<Incoming>> {
        let req = match &self.bearer {
            Some(t) => req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            None => req,
        };
        let req = req
            .body(Empty::new())
            .map_err(|e| self.bad_answer(e.to_string()))?;
        self.client
            .request(req)
            .await
            .map_err(|e| self.unavailable(format!("request failed: {e}")))
    }

    /// One GET; 5xx and connection failures are "unavailable", other non-2xx answers and
    /// bodies that are not the promised JSON are bad answers. `None` is a 404: "no such
    /// record" in most department APIs, so an empty table.
    async fn get(&self, url: url::Url) -> Result<Option<Bytes>> {
        let resp = self
            .send(Request::get(url.as_str()).header(header::ACCEPT, "application/json"))
            .await?;
        let status = resp.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(self.unavailable(format!("upstream answered {status}")));
        }
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| self.bad_answer(format!("reading the answer: {e}")))?
            .to_bytes();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.bad_answer(format!("upstream answered {status}")));
        }
        Ok(Some(body))
    }

    fn decode(&self, body: &[u8]) -> Result<RecordBatch> {
        let doc: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| self.bad_answer(format!("answer is not JSON: {e}")))?;
        let rows = match &self.rows_at {
            Some(p) => doc
                .pointer(p)
                .ok_or_else(|| self.bad_answer(format!("answer has nothing at {p}")))?,
            None => &doc,
        };
        let rows = match rows {
            serde_json::Value::Array(a) => a.as_slice(),
            // A single record is a one-row table.
            serde_json::Value::Object(_) => std::slice::from_ref(rows),
            _ => return Err(self.bad_answer("answer is not an array of objects")),
        };
        let mut decoder = ReaderBuilder::new(Arc::clone(&self.schema))
            .with_batch_size(rows.len().max(1))
            .build_decoder()
            .map_err(|e| self.bad_answer(e.to_string()))?;
        decoder.serialize(rows).map_err(|e| {
            self.bad_answer(format!("answer does not match the declared columns: {e}"))
        })?;
        Ok(decoder
            .flush()
            .map_err(|e| self.bad_answer(e.to_string()))?
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema))))
    }

    async fn run(&self, sql: &str, params: &[ParamValue]) -> Result<Rows> {
        let mut url = self.url.clone();
        {
            let mut q = url.query_pairs_mut();
            let mut seen = Vec::new();
            for (name, value) in placeholders(sql).iter().zip(params) {
                if seen.contains(name) {
                    continue;
                }
                seen.push(name.clone());
                match value {
                    ParamValue::Text(s) => q.append_pair(name, s),
                    ParamValue::Integer(i) => q.append_pair(name, &i.to_string()),
                };
            }
        }
        let batch = match self.get(url).await? {
            Some(body) => self.decode(&body)?,
            None => RecordBatch::new_empty(Arc::clone(&self.schema)),
        };
        let ctx = engine::session();
        ctx.register_batch(&self.table, batch)
            .map_err(|e| self.bad_answer(e.to_string()))?;
        engine::run(&self.name, self.limits, &ctx, sql, params).await
    }
}

impl DataSource for HttpSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn query<'a>(&'a self, sql: &'a str, params: &'a [ParamValue]) -> BoxFuture<'a, Result<Rows>> {
        Box::pin(with_timeout(&self.name, self.limits, self.run(sql, params)))
    }

    /// Reachable means the upstream answers HTTP at all (any status below 500).
    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(with_timeout(&self.name, self.limits, async move {
            let resp = self.send(Request::head(self.url.as_str())).await?;
            if resp.status().is_server_error() {
                return Err(self.unavailable(format!("upstream answered {}", resp.status())));
            }
            Ok(())
        }))
    }
}
