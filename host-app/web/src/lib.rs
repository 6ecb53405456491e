//! The web operator page of `agency run --web`: one page, served beside the console, to
//! talk to a space, see its agents, watch its traffic and answer permission questions.
//!
//! - [`auth`]: who may see the page (a token, then a cookie), and the checks that keep
//!   other sites out (Host, Origin, a CSRF header).
//! - [`session`]: the page's agent in the space (`<console id>-web`): what the page
//!   sends, what it receives, and the agents it learnt of from `help` answers.
//! - [`traffic`]: the space's traffic for the page, kept in a bounded ring and sampled.
//! - [`routes`]: the HTTP API and the WebSocket that carries events to the page.
//! - `assets/`: the page itself, plain HTML, CSS and JavaScript with no build step,
//!   embedded in the binary (it works offline; nothing comes from a CDN).
//!
//! Everything from the space is data to the page: it is put in the DOM as text, never
//! parsed as HTML.
//!
//! ```no_run
//! # fn demo(space: std::sync::Arc<agency_runtime::Space>) -> Result<(), String> {
//! use agency_operator::Permissions;
//! use agency_web::{Options, WebUi};
//!
//! let permissions = Permissions::install(&space);
//! let web = WebUi::start(space, permissions, Options::new("User-web"))?;
//! println!("open {}", web.url());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod auth;
pub mod routes;
pub mod session;
pub mod traffic;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use agency_operator::Permissions;
use agency_runtime::{AgentSpec, Space};

/// The address `agency run --web` listens on when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7860";

/// How the page is served.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen (port 0: any free port).
    pub addr: SocketAddr,
    /// Allow an address other than loopback (anyone who can reach it and has the token
    /// can act as the page's agent).
    pub public: bool,
    /// The id of the page's agent in the space.
    pub id: String,
    /// How long the page waits for a reply before saying none came.
    pub wait: Duration,
}

impl Options {
    /// Loopback on [`DEFAULT_ADDR`], the page's agent named `id`, replies awaited 5 s.
    pub fn new(id: &str) -> Self {
        Self {
            addr: DEFAULT_ADDR.parse().expect("a valid address"),
            public: false,
            id: id.to_owned(),
            wait: Duration::from_secs(5),
        }
    }
}

/// The page being served; dropping it stops the server and removes the page's agent.
pub struct WebUi {
    url: String,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<()>>,
    session: Arc<session::Session>,
}

impl WebUi {
    /// Adds the page's agent to `space` and serves the page; fails (saying why) if the
    /// address is not loopback without [`Options::public`], cannot be bound, or the id is
    /// taken.
    pub fn start(
        space: Arc<Space>,
        permissions: Permissions,
        options: Options,
    ) -> Result<Self, String> {
        if !options.addr.ip().is_loopback() && !options.public {
            return Err(format!(
                "{} is not a loopback address: anyone who reaches it could use the page; \
                 add --web-public to serve it there anyway",
                options.addr
            ));
        }
        let listener = std::net::TcpListener::bind(options.addr)
            .map_err(|e| format!("cannot serve the web page on {}: {e}", options.addr))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot serve the web page: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let me = space
            .add_foreground(
                &AgentSpec::untyped(&options.id)
                    .ignoring_own_broadcasts()
                    .without_log(),
            )
            .map_err(|e| format!("cannot attach the web page as {:?}: {e}", options.id))?;
        let keys = auth::Keys::new(addr, options.public)?;
        let url = format!("http://{}/?token={}", display_host(addr), keys.token());
        let session = session::Session::start(space, me, permissions, options.wait);
        let router = routes::router(session.clone(), Arc::new(keys));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("web page")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the web server: {e}"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::Builder::new()
            .name("web server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => return tracing::error!(%error, "the web page is not served"),
                    };
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    if let Err(error) = axum::serve(listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await
                    {
                        tracing::error!(%error, "the web server stopped");
                    }
                });
                // Open WebSockets end with the runtime.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| format!("cannot start the web server: {e}"))?;
        Ok(Self {
            url,
            addr,
            stop: Some(stop),
            server: Some(server),
            session,
        })
    }

    /// The URL to open, with the token (`http://127.0.0.1:7860/?token=...`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the page is served on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for WebUi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        self.session.close();
    }
}

/// `127.0.0.1:7860` or `[::1]:7860`; an unspecified address (`0.0.0.0`) as `localhost`.
fn display_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}
