//! The host's HTTP front ends. The web operator page of `agency run --web`: one page,
//! served beside the console, to talk to a space, see its agents, watch its traffic and
//! answer permission questions; and the Prometheus endpoint of `agency run --metrics`.
//!
//! - [`auth`]: who may see the page (a token, then a cookie), and the checks that keep
//!   other sites out (Host, Origin, a CSRF header).
//! - [`pages`]: what every open page shares: one operator session (its agent in the
//!   space, `<console id>-web`, what it sends and receives, the agents it learnt of from
//!   `help` answers), the chat and the traffic; [`events`]: what the pages are told.
//! - [`traffic`]: the space's traffic for the page, kept in a bounded ring and sampled.
//! - [`routes`]: the HTTP API and the WebSocket that carries events to the page.
//! - [`metrics`]: the Prometheus endpoint of `agency run --metrics`; [`process`]: the
//!   process's own figures it shows.
//! - [`server`]: serving a router on a thread of its own, for both.
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
pub mod events;
pub mod metrics;
pub mod pages;
pub mod process;
pub mod routes;
pub mod server;
pub mod traffic;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use agency_operator::Permissions;
use agency_runtime::{AgentSpec, Space};
use server::{display_host, Server};

/// The address `agency run --web` listens on when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7860";

/// How the page is served.
#[derive(Clone)]
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
    /// What the Health view plots (the metrics' source, with the plugins' reports);
    /// `None`: the space's own counts.
    pub health: Option<metrics::Source>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("addr", &self.addr)
            .field("public", &self.public)
            .field("id", &self.id)
            .field("wait", &self.wait)
            .field("health", &self.health.as_ref().map(|_| "a source"))
            .finish()
    }
}

impl Options {
    /// Loopback on [`DEFAULT_ADDR`], the page's agent named `id`, replies awaited 5 s.
    pub fn new(id: &str) -> Self {
        Self {
            addr: DEFAULT_ADDR.parse().expect("a valid address"),
            public: false,
            id: id.to_owned(),
            wait: Duration::from_secs(5),
            health: None,
        }
    }
}

/// The page being served; dropping it stops the server and removes the page's agent.
pub struct WebUi {
    url: String,
    addr: SocketAddr,
    server: Option<Server>,
    pages: Arc<pages::Pages>,
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
        let mut page = None;
        let server = Server::start(
            options.addr,
            options.public,
            "web page",
            "--web-public",
            |addr| {
                let me = space
                    .add_foreground(
                        &AgentSpec::untyped(&options.id)
                            .ignoring_own_broadcasts()
                            .without_log(),
                    )
                    .map_err(|e| format!("cannot attach the web page as {:?}: {e}", options.id))?;
                let keys = auth::Keys::new(addr, options.public)?;
                let url = format!("http://{}/?token={}", display_host(addr), keys.token());
                let health = options.health.clone().unwrap_or_else(|| {
                    let space = space.clone();
                    Arc::new(move || metrics::Exposition::of(space.metrics(0, &[])))
                });
                let pages = pages::Pages::start(space, me, permissions, options.wait);
                let router = routes::router(pages.clone(), Arc::new(keys), health);
                page = Some((url, pages));
                Ok(router)
            },
        );
        match (server, page) {
            (Ok(server), Some((url, pages))) => Ok(Self {
                url,
                addr: server.addr(),
                server: Some(server),
                pages,
            }),
            (server, page) => {
                if let Some((_, pages)) = page {
                    pages.close();
                }
                Err(server
                    .err()
                    .unwrap_or_else(|| "the web page was not set up".into()))
            }
        }
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
        drop(self.server.take());
        self.pages.close();
    }
}
