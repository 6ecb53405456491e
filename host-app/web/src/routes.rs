//! The HTTP API and the WebSocket the page uses; every route is behind [`auth::guard`].
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | the page (with `?token=`: also sets the access cookie) |
//! | `GET /app.js`, `/style.css` | the page's script and style, embedded in the binary |
//! | `GET /api/agents` | the agents known: `[{"id", "type", "local", "help"?}]` |
//! | `GET /api/health` | what the host counts now, for the Health view: `{"space": ..., "plugins": [[file, figures]], ...}` ([`crate::metrics::Exposition`]) |
//! | `POST /api/line` `{"line"}` | a chat line, read as the console reads it: `{"id"}`, `{"text"}` or `400 {"error"}` |
//! | `POST /api/send` `{"to", "action": {"name", "args"}}` | sends a message (the forms): `{"id"}` |
//! | `POST /api/refresh` | asks every agent for its `help` again |
//! | `POST /api/questions/{id}` `{"allow"}` | answers a permission question; `409` if another answer came first |
//! | `GET /api/events` | WebSocket: the events of [`Pages`] and, while the page asks for them (`{"traffic": true, "filter": {...}}`), traffic samples every [`TICK`] |

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{
        ws::{Message as Frame, WebSocket, WebSocketUpgrade},
        Path, Request, State,
    },
    http::{header, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    auth::{self, Keys},
    events::PageEvent,
    metrics::Source,
    pages::Pages,
    traffic::{Filter, Viewer},
};

/// How often a page viewing the traffic gets a sample.
pub const TICK: Duration = Duration::from_millis(250);

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

#[derive(Clone)]
struct Page {
    pages: Arc<Pages>,
    keys: Arc<Keys>,
    health: Source,
}

/// The page's routes, guarded; the Health view reads `health`.
pub fn router(pages: Arc<Pages>, keys: Arc<Keys>, health: Source) -> Router {
    let page = Page {
        pages,
        keys: keys.clone(),
        health,
    };
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route("/style.css", get(|| async { asset("text/css", STYLE) }))
        .route("/api/agents", get(agents))
        .route("/api/health", get(health_now))
        .route("/api/line", post(line))
        .route("/api/send", post(send))
        .route("/api/refresh", post(refresh))
        .route("/api/questions/{id}", post(answer))
        .route("/api/events", get(events))
        .with_state(page)
        .layer(middleware::from_fn_with_state(keys, auth::guard))
}

fn asset(kind: &'static str, text: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], text).into_response()
}

/// The page, with its CSRF token; opened with the token in the URL, it sets the cookie.
async fn index(State(page): State<Page>, request: Request) -> Response {
    let html = INDEX.replace("{{csrf}}", page.keys.csrf());
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    if page.keys.in_query(&request) {
        if let Ok(cookie) = page.keys.cookie().parse() {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
    }
    response
}

async fn agents(State(page): State<Page>) -> Json<Value> {
    Json(page.pages.agents())
}

async fn health_now(State(page): State<Page>) -> Response {
    // A snapshot locks the space's members a moment: off the server's runtime thread.
    let source = page.health.clone();
    match tokio::task::spawn_blocking(move || source()).await {
        Ok(exposition) => Json(exposition).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn refresh(State(page): State<Page>) -> StatusCode {
    page.pages.refresh();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Line {
    line: String,
}

async fn line(State(page): State<Page>, Json(body): Json<Line>) -> Response {
    answer_with(page.pages.line(&body.line))
}

#[derive(Deserialize)]
struct Send {
    to: String,
    action: Value,
}

async fn send(State(page): State<Page>, Json(body): Json<Send>) -> Response {
    let message = json!({"to": body.to, "action": body.action});
    answer_with(page.pages.send_json(message))
}

#[derive(Deserialize)]
struct Answer {
    allow: bool,
}

async fn answer(
    State(page): State<Page>,
    Path(id): Path<u64>,
    Json(body): Json<Answer>,
) -> Response {
    match page.pages.answer(id, body.allow) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => (StatusCode::CONFLICT, Json(json!({"error": error}))).into_response(),
    }
}

fn answer_with(result: Result<Value, String>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response(),
    }
}

async fn events(State(page): State<Page>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| stream(socket, page.pages))
}

/// What a page asks for over its WebSocket; each wish is answered with
/// `{"type": "viewing", "traffic": bool}` once applied (from then on, every message the
/// space's agents send is in the samples, or counted as skipped).
#[derive(Deserialize)]
struct Wish {
    /// Whether it shows the traffic (samples are sent only then).
    traffic: Option<bool>,
    filter: Option<Filter>,
}

impl Wish {
    /// Starts or stops the page's traffic view, and sets its filter.
    fn apply(self, pages: &Pages, viewer: &mut Option<Viewer>, filter: &mut Filter) {
        if let Some(wanted) = self.filter {
            *filter = wanted;
        }
        match self.traffic {
            Some(true) if viewer.is_none() => *viewer = Some(pages.traffic().view()),
            Some(false) => *viewer = None,
            _ => {}
        }
        if let Some(viewer) = viewer {
            viewer.filter = filter.clone();
        }
    }
}

/// Feeds one page: `hello`, then every event, and traffic samples while it wants them.
async fn stream(mut socket: WebSocket, pages: Arc<Pages>) {
    let mut events = pages.events();
    if send_text(&mut socket, pages.hello()).await.is_err() {
        return;
    }
    let mut viewer = None;
    let mut filter = Filter::default();
    let mut tick = tokio::time::interval(TICK);
    loop {
        let outgoing = tokio::select! {
            event = events.recv() => match event {
                Ok(text) => text.to_string(),
                Err(RecvError::Lagged(count)) => PageEvent::Missed { count }.text(),
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => match viewer.as_mut().and_then(Viewer::sample) {
                Some(sample) => sample,
                None => continue,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Frame::Text(text))) => {
                    match serde_json::from_str::<Wish>(&text) {
                        Ok(wish) => wish.apply(&pages, &mut viewer, &mut filter),
                        Err(_) => continue,
                    }
                    PageEvent::Viewing { traffic: viewer.is_some() }.text()
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return,
            },
        };
        if send_text(&mut socket, outgoing).await.is_err() {
            return;
        }
    }
}

async fn send_text(socket: &mut WebSocket, text: String) -> Result<(), axum::Error> {
    socket.send(Frame::Text(text.into())).await
}
