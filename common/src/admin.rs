//! The admin listener every service runs (edge 9180, ingest 9181, aggregator
//! 9182, api 9183, loopback): `/metrics` (Prometheus text format 0.0.4),
//! `/healthz` (liveness: 200 while the process serves) and `/readyz`
//! (readiness: 200 when every registered component is ready or degraded, else
//! 503; the JSON body always names each component's state).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// State of one component.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Ready,
    /// Serving, but something is wrong (e.g. the edge serves a stale cache
    /// while MongoDB is down): still ready, so a load balancer keeps it.
    Degraded(String),
    NotReady(String),
}

/// Readiness of the components of one process (`kafka`, `mongodb`, `cache`,
/// ...). Cheap to clone; all clones share state.
#[derive(Clone, Default)]
pub struct Health {
    components: Arc<RwLock<BTreeMap<&'static str, State>>>,
}

impl Health {
    /// A set with no components: ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `component` ready.
    pub fn ready(&self, component: &'static str) {
        self.set(component, State::Ready);
    }

    /// Marks `component` serving but degraded, with a reason shown by `/readyz`;
    /// it does not make the process unready.
    pub fn degraded(&self, component: &'static str, reason: impl Into<String>) {
        self.set(component, State::Degraded(reason.into()));
    }

    /// Marks `component` not ready, with a reason shown by `/readyz`.
    pub fn not_ready(&self, component: &'static str, reason: impl Into<String>) {
        self.set(component, State::NotReady(reason.into()));
    }

    fn set(&self, component: &'static str, state: State) {
        let mut map = self.components.write().unwrap_or_else(|e| e.into_inner());
        map.insert(component, state);
    }

    /// True when every component is ready.
    pub fn is_ready(&self) -> bool {
        let map = self.components.read().unwrap_or_else(|e| e.into_inner());
        map.values().all(|s| !matches!(s, State::NotReady(_)))
    }

    /// `{"ready": bool, "components": {"name": "ok" | "degraded: reason" | "not ready: reason"}}`.
    pub fn report(&self) -> serde_json::Value {
        let map = self.components.read().unwrap_or_else(|e| e.into_inner());
        let components: serde_json::Map<String, serde_json::Value> = map
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    State::Ready => "ok".to_string(),
                    State::Degraded(r) => format!("degraded: {r}"),
                    State::NotReady(r) => format!("not ready: {r}"),
                };
                ((*k).to_string(), serde_json::Value::String(s))
            })
            .collect();
        let ready = map.values().all(|s| !matches!(s, State::NotReady(_)));
        serde_json::json!({ "ready": ready, "components": components })
    }
}

/// Binds `addr` and serves the admin routes until `shutdown` is cancelled.
/// Returns the bound address (useful with port 0) and the server task.
/// Registers the process metrics (start time, CPU, memory, fds) in
/// `registry`. Errors when the address cannot be bound.
pub async fn spawn(
    addr: SocketAddr,
    registry: Registry,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // The standard process metrics (`process_start_time_seconds`,
    // `process_cpu_seconds_total`, `process_resident_memory_bytes`, open
    // fds): restarts and resource use of every stage. Already registered
    // (a second listener on the same registry) is fine.
    let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        continue;
                    }
                },
            };
            let (registry, health) = (registry.clone(), health.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let resp = route(&req, &registry, &health);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
            });
        }
    });
    Ok((local, task))
}

fn route(req: &Request<Incoming>, registry: &Registry, health: &Health) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut buf = Vec::with_capacity(16 * 1024);
            let encoder = TextEncoder::new();
            match encoder.encode(&registry.gather(), &mut buf) {
                Ok(()) => text(StatusCode::OK, encoder.format_type(), buf),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("{e}\n").into()),
            }
        }
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let status = if health.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            text(status, "application/json", health.report().to_string().into_bytes())
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reports_components() {
        let h = Health::new();
        assert!(h.is_ready());
        h.ready("kafka");
        h.not_ready("mongodb", "connection refused");
        assert!(!h.is_ready());
        let r = h.report();
        assert_eq!(r["ready"], false);
        assert_eq!(r["components"]["mongodb"], "not ready: connection refused");
        h.degraded("mongodb", "stale cache");
        assert!(h.is_ready(), "degraded still serves");
        assert_eq!(h.report()["components"]["mongodb"], "degraded: stale cache");
        h.ready("mongodb");
        assert!(h.is_ready());
    }
}
