//! Graceful shutdown: one [`CancellationToken`] per process, cancelled on
//! SIGTERM or SIGINT; every task selects on it.

pub use tokio_util::sync::CancellationToken;

/// Returns a token cancelled when the process receives SIGTERM or SIGINT
/// (Ctrl-C). Must be called inside a tokio runtime.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
