//! Graceful shutdown: one signal (SIGTERM or Ctrl-C) flips a watch channel that every loop
//! selects on; each loop then drains what it holds, commits, and returns.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown { rx, tx: std::sync::Arc::new(tx) }
    }

    /// Flip on SIGTERM / SIGINT.
    pub fn listen_for_signals(&self) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install SIGTERM handler");
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            tracing::info!("shutdown signal received; draining");
            let _ = tx.send(true);
        });
    }

    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// A receiver for loops that select on the flag directly.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has been requested.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}
