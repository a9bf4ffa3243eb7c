//! What every fake shares: a listener on an ephemeral local port, a server task, and stopping it (on
//! request, or when the handle is dropped).

use crate::TestkitError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A future that completes when the fake is told to stop.
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Binds an ephemeral port of 127.0.0.1.
pub async fn bind_local() -> Result<TcpListener, TestkitError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    TcpListener::bind(addr).await.map_err(|source| TestkitError::Bind { addr: addr.to_string(), source })
}

/// A fake's running server task.
pub struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), TestkitError>>>,
}

impl Running {
    /// Spawns `serve(listener, stop)`; the server must return once `stop` completes.
    pub fn spawn<Fut>(
        listener: TcpListener,
        serve: impl FnOnce(TcpListener, StopSignal) -> Fut,
    ) -> Result<Self, TestkitError>
    where
        Fut: Future<Output = Result<(), TestkitError>> + Send + 'static,
    {
        let addr = listener.local_addr().map_err(TestkitError::Serve)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let signal: StopSignal = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve(listener, signal));
        Ok(Running { addr, stop: Some(stop), task: Some(task) })
    }

    /// Binds an ephemeral local port and spawns `serve` on it.
    pub async fn start<Fut>(serve: impl FnOnce(TcpListener, StopSignal) -> Fut) -> Result<Self, TestkitError>
    where
        Fut: Future<Output = Result<(), TestkitError>> + Send + 'static,
    {
        Self::spawn(bind_local().await?, serve)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and waits (at most 5 s) for it to finish.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
