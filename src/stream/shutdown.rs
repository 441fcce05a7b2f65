//! The one signal that ends every supervised stream of a worker.

use tokio::sync::watch;

/// The signal that ends every supervised stream of a worker.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side of [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A fresh trigger and its signal.
pub fn shutdown_signal() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Fires the signal; every supervisor ends at its next await.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// A signal to hand to a new supervisor.
    pub fn signal(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Resolves once the signal fired; never if its trigger is dropped
    /// unfired (handles still end their task by going away).
    pub async fn fired(&mut self) {
        if self.0.wait_for(|&v| v).await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
}
