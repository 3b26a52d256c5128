//! The mTLS server: a TCP accept loop, the rustls handshake, the caller's identity from
//! its certificate, and hyper serving the axum app on the connection.
//!
//! We run our own accept loop (rather than `axum::serve`) because the identity comes from
//! the TLS session and must be attached to every request of that connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use paotui_certs::SystemIdentity;
use paotui_certs::tls::{ReloadableClientVerifier, ServerTlsFiles, server_config};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::audit::Caller;
use crate::config::Config;
use crate::{Error, Result, app};

/// A running gateway.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Stops accepting, lets open requests finish (up to 10 s), and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops on its own (it does not, short of a fatal error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Starts the gateway described by `cfg` (listening on `cfg.listen`; port 0 picks one).
pub async fn spawn(cfg: &Config) -> Result<Server> {
    let state = app::build_state(cfg).await?;
    let router = app::router(state.clone());
    let files = ServerTlsFiles {
        ca: cfg.path(&cfg.tls.ca),
        crl: cfg.tls.crl.as_ref().map(|p| cfg.path(p)),
        cert: cfg.path(&cfg.tls.cert),
        key: cfg.path(&cfg.tls.key),
    };
    let (tls, verifier) = server_config(&files)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {}", cfg.listen), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("listener address", e))?;
    let (tx, rx) = watch::channel(false);

    // Revocations take effect without a restart: the CRL file is polled for changes.
    let poll = Duration::from_millis(cfg.limits.crl_poll_ms.max(100));
    let mut crl_rx = rx.clone();
    let verifier_for_requests = verifier.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = crl_rx.changed() => return,
            }
            match verifier.reload_if_changed() {
                Ok(true) => tracing::info!("CRL reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "CRL reload failed; keeping the previous CRL"),
            }
        }
    });

    // Policies reload on SIGHUP; a directory that does not validate keeps the old set.
    #[cfg(unix)]
    if cfg.policy.dir.is_some() {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| Error::io("SIGHUP handler", e))?;
        let mut stop = rx.clone();
        let cfg = cfg.clone();
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => {}
                    _ = stop.changed() => return,
                }
                match app::load_policies(&cfg, &state.auditors) {
                    Ok(p) => {
                        let n = p.len();
                        state.policy.replace(std::sync::Arc::new(p));
                        tracing::info!(policies = n, "policies reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "policy reload failed; keeping the previous policies");
                    }
                }
            }
        });
    }

    // Supervision rules run on a schedule; a failing evaluation is logged and retried at
    // the next tick (auditors can also run them on demand).
    if cfg.alerts.interval_s > 0 {
        let every = Duration::from_secs(cfg.alerts.interval_s);
        let mut stop = rx.clone();
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
                let (_, now) = crate::vault::now();
                match crate::alerts::evaluate(
                    &state.store,
                    &state.catalog,
                    &state.sql,
                    &state.alert_rules,
                    now,
                )
                .await
                {
                    Ok(raised) => {
                        let new: u64 = raised.iter().map(|r| r.new).sum();
                        if new > 0 {
                            tracing::warn!(new, "supervision rules raised alerts");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "supervision rules failed"),
                }
            }
        });
    }

    let acceptor = TlsAcceptor::from(tls);
    let task = tokio::spawn(accept_loop(
        listener,
        acceptor,
        router,
        verifier_for_requests,
        rx,
    ));
    tracing::info!(%addr, store = state.store.backend_name(), "paotui listening (mTLS)");
    Ok(Server {
        addr,
        shutdown: tx,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    verifier: Arc<ReloadableClientVerifier>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that trickles its headers must not hold a connection forever.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let verifier = verifier.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|der| SystemIdentity::from_cert_der(der));
            let identity = match identity {
                Some(Ok(id)) => Some(id),
                Some(Err(e)) => {
                    tracing::info!(%peer, error = %e, "certificate names no paotui system");
                    None
                }
                None => None,
            };
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    // A kept-alive connection outlives a revocation; check on every request.
                    let refusal = identity
                        .as_ref()
                        .filter(|id| verifier.is_revoked(&id.serial))
                        .map(|_| "client certificate has been revoked".to_owned());
                    req.extensions_mut().insert(Caller {
                        identity: identity.clone(),
                        refusal,
                    });
                    router.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing");
    }
}
