//! `paotui-load`: the load generator of the benches (issue G). See `--help` and
//! `benches/BENCHMARKS.md`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::Method;
use http::header::{HeaderName, HeaderValue};
use paotui_benches::load::{self, LoadError, Plan, Target};

/// Drives one loopback HTTP(S) endpoint with a bounded load and reports throughput and
/// latency percentiles (HdrHistogram).
///
/// Closed loop by default (`-c` workers, each sends when its last answer is in); with
/// `--rate` an open loop (request k is due at k/rate s; latency counts from when it was
/// due). Only loopback targets, and only bounded runs (`-n` and/or `-d`).
///
/// Example (a governed query over mTLS, 64 kept-alive connections, 30 s):
///
///   paotui-load https://localhost:8443/v1/services/population.person/query -X POST \
///     --ca data/ca/ca.pem --cert data/systems/RS-shebao.pem --key data/systems/RS-shebao.key \
///     -H 'content-type: application/json' --body-file query.json -c 64 -d 30s
#[derive(Parser, Debug)]
#[command(name = "paotui-load", version, verbatim_doc_comment)]
struct Args {
    /// The URL (http:// or https://, loopback host only).
    url: String,
    /// HTTP method.
    #[arg(short = 'X', long, default_value = "GET")]
    method: String,
    /// A header, `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The request body, from a file.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Concurrent connections (workers).
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// Open loop at this many requests per second (closed loop when absent).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many requests.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Stop after this long (e.g. 30s, 500ms, 2m).
    #[arg(short = 'd', long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Open a new connection (full TLS handshake) for every request.
    #[arg(long)]
    new_connections: bool,
    /// CA certificate (PEM) the server's certificate is checked against (https).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS; with --key.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    load::parse_duration(s).map_err(|e| e.to_string())
}

fn plan(a: &Args) -> Result<Plan, String> {
    let target = Target::parse(&a.url).map_err(|e| e.to_string())?;
    let method = Method::from_bytes(a.method.as_bytes())
        .map_err(|_| format!("{:?} is not an HTTP method", a.method))?;
    let mut headers = Vec::new();
    for h in &a.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("header {h:?}: expected `name: value`"))?;
        let k = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| format!("header {h:?}: bad name"))?;
        let v = HeaderValue::from_str(v.trim()).map_err(|_| format!("header {h:?}: bad value"))?;
        headers.push((k, v));
    }
    let body = match &a.body_file {
        Some(p) => Bytes::from(std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Bytes::new(),
    };
    let tls = match &a.ca {
        Some(ca) => {
            let identity = a.cert.as_deref().zip(a.key.as_deref());
            Some(paotui_certs::tls::client_config(ca, identity).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    Ok(Plan {
        target,
        method,
        headers,
        body,
        concurrency: a.concurrency,
        rate: a.rate,
        requests: a.requests,
        duration: a.duration,
        new_connections: a.new_connections,
        tls,
    })
}

fn main() {
    let args = Args::parse();
    let plan = match plan(&args).and_then(|p| p.check().map(|()| p).map_err(|e| e.to_string())) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("paotui-load: {e}");
            std::process::exit(2);
        }
    };
    let Some(rt) = paotui_benches::runtime() else {
        std::process::exit(1);
    };
    match rt.block_on(load::run(plan)) {
        Ok(r) if args.json => println!("{}", r.to_json()),
        Ok(r) => {
            let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
            println!(
                "{} answered, {} errors, {} connections in {:.2} s: {:.0} requests/s",
                r.completed,
                r.errors,
                r.connections,
                r.elapsed.as_secs_f64(),
                r.throughput()
            );
            println!(
                "latency p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                ms(r.percentile(0.5)),
                ms(r.percentile(0.9)),
                ms(r.percentile(0.99)),
                ms(r.percentile(0.999)),
                ms(Duration::from_micros(r.latency_us.max()))
            );
            let statuses: Vec<String> = r
                .statuses
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            println!("statuses {}", statuses.join(", "));
        }
        Err(e @ LoadError::Refused(_)) => {
            eprintln!("paotui-load: {e}");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("paotui-load: {e}");
            std::process::exit(1);
        }
    }
}
