//! The load generator's engine (`paotui-load`, issue G).
//!
//! Two modes, as in wrk / wrk2:
//! - **closed loop** (`concurrency` workers, each sends its next request when the last
//!   one is answered): measures what the server sustains;
//! - **open loop** (a fixed `rate`; request k is due at `k / rate` after the start, sent by
//!   one of `concurrency` workers): latency is measured from when the request was *due*,
//!   so a server that stalls is charged for the requests that queued behind the stall
//!   (no coordinated omission).
//!
//! Connections are kept alive (one per worker, reopened after an error) or opened anew for
//! every request (`new_connections`: each pays TCP and a full TLS handshake — the gateway
//! resumes no session). Latencies go into an HdrHistogram (µs, 3 significant digits).
//!
//! A run is refused unless it targets loopback and is bounded (a request count or a
//! duration, each under a ceiling): the generator is a bench tool, not a flood tool.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Most requests one run may send.
pub const MAX_REQUESTS: u64 = 10_000_000;
/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most concurrent connections.
pub const MAX_CONCURRENCY: usize = 10_000;
/// Highest open-loop rate (requests per second).
pub const MAX_RATE: f64 = 1_000_000.0;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The run as asked is not allowed (target, bounds) or not well formed.
    #[error("{0}")]
    Refused(String),
    /// Connecting or talking to the target failed.
    #[error("{0}")]
    Io(String),
}

fn io(e: impl std::fmt::Display) -> LoadError {
    LoadError::Io(e.to_string())
}

/// Where requests go: a loopback `http://` or `https://` URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub tls: bool,
    pub addr: SocketAddr,
    /// Host as written in the URL (SNI and certificate name for https).
    pub host: String,
    /// Path and query.
    pub path: String,
}

impl Target {
    /// Parses `url`, refusing anything but loopback (127.0.0.0/8, ::1, `localhost`).
    pub fn parse(url: &str) -> Result<Target, LoadError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| LoadError::Refused(format!("{url:?} is not a URL: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(LoadError::Refused(format!(
                    "{url:?}: the URL must start with http:// or https://"
                )));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| LoadError::Refused(format!("{url:?} names no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse::<IpAddr>().map_err(|_| not_loopback(&host))?
        };
        if !ip.is_loopback() {
            return Err(not_loopback(&host));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Target {
            tls,
            addr: SocketAddr::new(ip, port),
            host,
            path,
        })
    }
}

fn not_loopback(host: &str) -> LoadError {
    LoadError::Refused(format!(
        "the load generator only drives loopback targets (127.0.0.0/8, ::1, localhost), not {host:?}"
    ))
}

/// One run.
#[derive(Clone)]
pub struct Plan {
    pub target: Target,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Workers, each with at most one request in flight.
    pub concurrency: usize,
    /// Open loop at this many requests per second; closed loop when `None`.
    pub rate: Option<f64>,
    /// Stop after this many requests …
    pub requests: Option<u64>,
    /// … or after this long, whichever comes first.
    pub duration: Option<Duration>,
    /// A new connection (and TLS handshake) for every request.
    pub new_connections: bool,
    /// Client TLS (CA, and the system certificate for mTLS); required for https.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Plan {
    /// Refuses an unbounded or malformed run.
    pub fn check(&self) -> Result<(), LoadError> {
        let refuse = |m: String| Err(LoadError::Refused(m));
        if self.requests.is_none() && self.duration.is_none() {
            return refuse(
                "an unbounded run is refused: give a request count or a duration".into(),
            );
        }
        if let Some(n) = self.requests
            && !(1..=MAX_REQUESTS).contains(&n)
        {
            return refuse(format!("requests must be 1 to {MAX_REQUESTS}, not {n}"));
        }
        if let Some(d) = self.duration
            && (d.is_zero() || d > MAX_DURATION)
        {
            return refuse(format!(
                "the duration must be above zero and at most {} s",
                MAX_DURATION.as_secs()
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return refuse(format!(
                "concurrency must be 1 to {MAX_CONCURRENCY}, not {}",
                self.concurrency
            ));
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0 && r <= MAX_RATE)
        {
            return refuse(format!("the rate must be above 0 and at most {MAX_RATE}/s"));
        }
        if self.target.tls && self.tls.is_none() {
            return refuse("an https target needs a CA (--ca)".into());
        }
        Ok(())
    }
}

/// When request `k` (0-based) is due in an open-loop run at `rate` per second.
pub fn due(k: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(k as f64 / rate)
}

/// Requests per second.
pub fn throughput(requests: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        requests as f64 / elapsed.as_secs_f64()
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Requests answered (any status).
    pub completed: u64,
    /// Requests that got no answer (connect, TLS or I/O error).
    pub errors: u64,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// New connections opened.
    pub connections: u64,
    pub elapsed: Duration,
    /// Latency of each answered request in µs (open loop: from when it was due).
    pub latency_us: Histogram<u64>,
}

impl Report {
    fn empty() -> Result<Report, LoadError> {
        Ok(Report {
            completed: 0,
            errors: 0,
            statuses: BTreeMap::new(),
            connections: 0,
            elapsed: Duration::ZERO,
            latency_us: latency_histogram()?,
        })
    }

    /// Answered requests per second.
    pub fn throughput(&self) -> f64 {
        throughput(self.completed, self.elapsed)
    }

    /// The latency at quantile `q` (0.5 = p50, 0.99 = p99).
    pub fn percentile(&self, q: f64) -> Duration {
        Duration::from_micros(self.latency_us.value_at_quantile(q))
    }

    fn merge(&mut self, other: &Report) -> Result<(), LoadError> {
        self.completed += other.completed;
        self.errors += other.errors;
        self.connections += other.connections;
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        self.latency_us.add(&other.latency_us).map_err(io)
    }

    /// The report as JSON (durations in ms).
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        serde_json::json!({
            "completed": self.completed,
            "errors": self.errors,
            "connections": self.connections,
            "statuses": self.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput": self.throughput(),
            "latency_ms": {
                "p50": ms(self.percentile(0.5)),
                "p90": ms(self.percentile(0.9)),
                "p99": ms(self.percentile(0.99)),
                "p999": ms(self.percentile(0.999)),
                "max": ms(Duration::from_micros(self.latency_us.max())),
                "mean": self.latency_us.mean() / 1000.0,
            },
        })
    }
}

/// 1 µs to one hour, 3 significant digits.
fn latency_histogram() -> Result<Histogram<u64>, LoadError> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(io)
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn handshake<S>(io_stream: S) -> Result<Sender, LoadError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io_stream))
        .await
        .map_err(io)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn connect(plan: &Plan, name: &ServerName<'static>) -> Result<Sender, LoadError> {
    let tcp = TcpStream::connect(plan.target.addr).await.map_err(io)?;
    tcp.set_nodelay(true).map_err(io)?;
    match &plan.tls {
        Some(cfg) if plan.target.tls => {
            let tls = TlsConnector::from(Arc::clone(cfg))
                .connect(name.clone(), tcp)
                .await
                .map_err(io)?;
            handshake(tls).await
        }
        _ => handshake(tcp).await,
    }
}

async fn send(plan: &Plan, sender: &mut Sender, authority: &str) -> Result<u16, LoadError> {
    let mut req = http::Request::builder()
        .method(plan.method.clone())
        .uri(plan.target.path.as_str())
        .header(http::header::HOST, authority);
    for (k, v) in &plan.headers {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(plan.body.clone())).map_err(io)?;
    sender.ready().await.map_err(io)?;
    let resp = sender.send_request(req).await.map_err(io)?;
    let status = resp.status().as_u16();
    // The whole answer is part of the request's time.
    resp.into_body().collect().await.map_err(io)?;
    Ok(status)
}

/// Runs `plan` and reports what it measured.
pub async fn run(plan: Plan) -> Result<Report, LoadError> {
    plan.check()?;
    let name = ServerName::try_from(plan.target.host.clone())
        .map_err(|e| LoadError::Refused(format!("{:?}: {e}", plan.target.host)))?;
    // Fail fast, with the reason, when the target does not answer at all.
    drop(connect(&plan, &name).await?);
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = plan.duration.map(|d| start + d);
    let mut workers = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency {
        let (plan, next, name) = (Arc::clone(&plan), Arc::clone(&next), name.clone());
        workers.push(tokio::spawn(async move {
            worker(&plan, &next, &name, start, deadline).await
        }));
    }
    let mut total = Report::empty()?;
    for w in workers {
        let part = w.await.map_err(io)??;
        total.merge(&part)?;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

async fn worker(
    plan: &Plan,
    next: &AtomicU64,
    name: &ServerName<'static>,
    start: Instant,
    deadline: Option<Instant>,
) -> Result<Report, LoadError> {
    let mut report = Report::empty()?;
    let authority = format!("{}:{}", plan.target.host, plan.target.addr.port());
    let mut conn: Option<Sender> = None;
    let past = |t: Instant| deadline.is_some_and(|d| t >= d);
    loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if plan.requests.is_some_and(|n| k >= n) {
            break;
        }
        let began = match plan.rate {
            Some(rate) => {
                let at = start + due(k, rate);
                if past(at) {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };
        if past(Instant::now()) {
            break;
        }
        let mut sender = match conn.take() {
            Some(s) if !plan.new_connections => s,
            _ => match connect(plan, name).await {
                Ok(s) => {
                    report.connections += 1;
                    s
                }
                Err(_) => {
                    report.errors += 1;
                    continue;
                }
            },
        };
        match send(plan, &mut sender, &authority).await {
            Ok(status) => {
                let us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                report.latency_us.saturating_record(us.max(1));
                *report.statuses.entry(status).or_default() += 1;
                report.completed += 1;
                conn = Some(sender);
            }
            Err(_) => report.errors += 1,
        }
    }
    Ok(report)
}

/// Parses a duration such as `30s`, `500ms`, `2m` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, LoadError> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num.parse().map_err(|_| {
        LoadError::Refused(format!("{s:?} is not a duration (e.g. 30s, 500ms, 2m)"))
    })?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => {
            return Err(LoadError::Refused(format!(
                "{s:?}: the unit must be ms, s or m"
            )));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| LoadError::Refused(format!("{s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn plan(url: &str) -> Plan {
        Plan {
            target: Target::parse(url).unwrap(),
            method: Method::GET,
            headers: vec![],
            body: Bytes::new(),
            concurrency: 4,
            rate: None,
            requests: Some(100),
            duration: None,
            new_connections: false,
            tls: None,
        }
    }

    #[test]
    fn only_loopback_targets_are_driven() {
        for ok in [
            "http://127.0.0.1:8080/healthz",
            "http://127.3.4.5/",
            "https://localhost:8443/v1/keys",
            "http://[::1]:9000/x?y=1",
        ] {
            let t = Target::parse(ok).unwrap();
            assert!(t.addr.ip().is_loopback(), "{ok}");
        }
        let t = Target::parse("http://[::1]:9000/x?y=1").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (9000, "/x?y=1"));
        for bad in [
            "http://10.0.0.1:8080/",
            "https://example.com/",
            "http://0.0.0.0:80/",
            "http://192.168.1.1/",
        ] {
            let e = Target::parse(bad).unwrap_err().to_string();
            assert!(e.contains("only drives loopback"), "{bad}: {e}");
        }
        assert!(Target::parse("ftp://127.0.0.1/").is_err());
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn unbounded_and_malformed_runs_are_refused() {
        let mut p = plan("http://127.0.0.1:1/");
        p.check().unwrap();
        p.requests = None;
        let e = p.check().unwrap_err().to_string();
        assert!(e.contains("unbounded"), "{e}");
        p.duration = Some(Duration::from_secs(MAX_DURATION.as_secs() + 1));
        assert!(p.check().is_err());
        p.duration = Some(Duration::from_secs(5));
        p.check().unwrap();
        p.requests = Some(MAX_REQUESTS + 1);
        assert!(p.check().is_err());
        p.requests = Some(10);
        p.concurrency = 0;
        assert!(p.check().is_err());
        p.concurrency = 1;
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_RATE * 2.0] {
            p.rate = Some(bad);
            assert!(p.check().is_err(), "{bad}");
        }
        p.rate = Some(100.0);
        p.check().unwrap();
        let mut s = plan("https://127.0.0.1:1/");
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("CA"), "{e}");
        s.target.tls = false;
        s.check().unwrap();
    }

    #[test]
    fn open_loop_schedule_and_rates() {
        assert_eq!(due(0, 1000.0), Duration::ZERO);
        assert_eq!(due(1, 1000.0), Duration::from_millis(1));
        assert_eq!(due(2500, 500.0), Duration::from_secs(5));
        assert_eq!(throughput(1000, Duration::from_secs(2)), 500.0);
        assert_eq!(throughput(5, Duration::ZERO), 0.0);
        assert_eq!(throughput(3, Duration::from_millis(1500)), 2.0);
    }

    /// 1 … 10,000 µs recorded once each: the percentiles are the values at those ranks,
    /// within the histogram's 3 significant digits.
    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Report::empty().unwrap();
        for us in 1..=10_000u64 {
            r.latency_us.record(us).unwrap();
        }
        r.completed = 10_000;
        r.elapsed = Duration::from_secs(4);
        let close = |got: Duration, want_us: u64| {
            let got = got.as_micros() as f64;
            (got - want_us as f64).abs() <= want_us as f64 * 0.001 + 1.0
        };
        assert!(close(r.percentile(0.5), 5_000), "{:?}", r.percentile(0.5));
        assert!(close(r.percentile(0.9), 9_000), "{:?}", r.percentile(0.9));
        assert!(close(r.percentile(0.99), 9_900), "{:?}", r.percentile(0.99));
        assert!(close(r.percentile(1.0), 10_000));
        assert_eq!(r.throughput(), 2_500.0);
        // Merging two halves gives the same distribution.
        let (mut a, mut b) = (Report::empty().unwrap(), Report::empty().unwrap());
        for us in 1..=10_000u64 {
            if us % 2 == 0 { &mut a } else { &mut b }
                .latency_us
                .record(us)
                .unwrap();
        }
        a.merge(&b).unwrap();
        assert_eq!(a.latency_us.len(), 10_000);
        assert_eq!(
            a.latency_us.value_at_quantile(0.99),
            r.latency_us.value_at_quantile(0.99)
        );
        let j = r.to_json();
        assert_eq!(j["completed"], 10_000);
        assert!((j["latency_ms"]["p50"].as_f64().unwrap() - 5.0).abs() < 0.01);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }

    /// A minimal HTTP/1.1 server: answers every request `200 ok`, keeps connections
    /// alive; counts connections accepted.
    async fn server() -> (SocketAddr, Arc<AtomicU64>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(r).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_sends_exactly_the_requests_asked_on_kept_alive_connections() {
        let (addr, accepted) = server().await;
        let mut p = plan(&format!("http://{addr}/healthz"));
        p.requests = Some(500);
        let r = run(p).await.unwrap();
        assert_eq!(r.completed, 500);
        assert_eq!(r.errors, 0);
        assert_eq!(r.statuses.get(&200), Some(&500));
        assert_eq!(r.latency_us.len(), 500);
        // One per worker, plus the first probe.
        assert_eq!(r.connections, 4);
        assert_eq!(accepted.load(Ordering::Relaxed), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_connections_open_one_per_request() {
        let (addr, accepted) = server().await;
        let mut p = plan(&format!("http://{addr}/"));
        p.requests = Some(60);
        p.new_connections = true;
        let r = run(p).await.unwrap();
        assert_eq!((r.completed, r.connections), (60, 60));
        assert_eq!(accepted.load(Ordering::Relaxed), 61);
    }

    /// At 1,000/s the 200th request is due 199 ms after the start: an open-loop run of
    /// 200 cannot end sooner, however fast the server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_keeps_the_schedule() {
        let (addr, _) = server().await;
        let mut p = plan(&format!("http://{addr}/"));
        p.requests = Some(200);
        p.rate = Some(1000.0);
        let r = run(p).await.unwrap();
        assert_eq!(r.completed, 200);
        assert!(r.elapsed >= Duration::from_millis(199), "{:?}", r.elapsed);
    }

    #[tokio::test]
    async fn a_duration_bounds_the_run() {
        let (addr, _) = server().await;
        let mut p = plan(&format!("http://{addr}/"));
        p.requests = None;
        p.duration = Some(Duration::from_millis(300));
        p.rate = Some(100.0);
        let r = run(p).await.unwrap();
        // Due at 0, 10, …, 290 ms: at most 30 requests and none after the
        // end; a late wake-up on a busy machine may drop the last ones.
        assert!((20..=30).contains(&r.completed), "{}", r.completed);
        assert!(r.elapsed < Duration::from_secs(2), "{:?}", r.elapsed);
    }

    #[tokio::test]
    async fn a_target_that_does_not_answer_is_reported() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = run(plan(&format!("http://{addr}/"))).await.unwrap_err();
        assert!(matches!(e, LoadError::Io(_)), "{e}");
    }
}
