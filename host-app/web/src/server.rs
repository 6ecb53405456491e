//! [`Server`]: an axum router served on a thread and a one-thread runtime of its own,
//! stopped when dropped. The page and the metrics endpoint are both served this way.

use std::{net::SocketAddr, time::Duration};

use axum::Router;

/// A router being served; dropping it stops the server (open connections end with it).
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves what `router` makes of the address bound (port 0 becomes
    /// a free port); `what` names the service in errors. Refuses an address other than
    /// loopback unless `public`: `flag` is the option that allows it.
    pub fn start(
        addr: SocketAddr,
        public: bool,
        what: &str,
        flag: &str,
        router: impl FnOnce(SocketAddr) -> Result<Router, String>,
    ) -> Result<Self, String> {
        if !addr.ip().is_loopback() && !public {
            return Err(format!(
                "{addr} is not a loopback address: anyone who reaches it could use the {what}; \
                 add {flag} to serve it there anyway"
            ));
        }
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot serve the {what} on {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot serve the {what}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let router = router(addr)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(what)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the {what}'s server: {e}"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let name = what.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("{what} server"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => return tracing::error!(%error, "the {name} is not served"),
                    };
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    if let Err(error) = axum::serve(listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await
                    {
                        tracing::error!(%error, "the {name}'s server stopped");
                    }
                });
                // Open WebSockets end with the runtime.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| format!("cannot start the {what}'s server: {e}"))?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `127.0.0.1:7860` or `[::1]:7860`; an unspecified address (`0.0.0.0`) as `localhost`.
pub fn display_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}
