//! The web page open on the traffic view, for the benchmarks: `agency-web` serving a
//! space, and a WebSocket client reading its traffic samples as a browser tab would.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use agency_operator::Permissions;
use agency_runtime::Space;
use agency_web::{Options, WebUi};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

/// What the reader received while the page was open.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    /// Traffic samples.
    pub samples: u64,
    /// Messages shown in them.
    pub shown: u64,
    /// Messages the samples said were skipped.
    pub skipped: u64,
}

/// The page served for a space, with a reader on its traffic view; [`OpenPage::close`]
/// ends both.
pub struct OpenPage {
    page: WebUi,
    stop: Arc<AtomicBool>,
    reader: JoinHandle<Seen>,
}

impl OpenPage {
    /// Serves the page for `space` on a free loopback port and starts reading its traffic
    /// view; returns once the page says the view is live.
    pub fn open(space: Arc<Space>) -> Self {
        let mut options = Options::new("bench-page");
        options.addr = "127.0.0.1:0".parse().unwrap();
        let page =
            WebUi::start(space, Permissions::default(), options).expect("the page is served");
        let token = page.url().split("token=").nth(1).unwrap().to_owned();
        let url = format!("ws://{}/api/events", page.addr());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, viewing) = std::sync::mpsc::channel();
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(read(url, token, stop, ready))
            })
        };
        viewing
            .recv_timeout(Duration::from_secs(10))
            .expect("the reader connects and views the traffic");
        Self { page, stop, reader }
    }

    /// Closes the reader and the page; answers what the reader saw.
    pub fn close(self) -> Seen {
        self.stop.store(true, Ordering::Release);
        let seen = self.reader.join().expect("the reader ends");
        drop(self.page);
        seen
    }
}

async fn read(
    url: String,
    token: String,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<()>,
) -> Seen {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the page's WebSocket accepts the token");
    socket
        .send(Message::text(r#"{"traffic": true}"#))
        .await
        .unwrap();
    // The page says when its traffic view is live.
    while let Some(Ok(frame)) = socket.next().await {
        if let Message::Text(text) = frame {
            if text.contains(r#""type":"viewing""#) {
                break;
            }
        }
    }
    let _ = ready.send(());
    let mut seen = Seen::default();
    while !stop.load(Ordering::Acquire) {
        let frame = match tokio::time::timeout(Duration::from_millis(100), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) | Err(_) => continue,
            Ok(Some(Err(_)) | None) => break,
        };
        let event: serde_json::Value = serde_json::from_str(&frame).unwrap_or_default();
        if event["type"] == "traffic" {
            seen.samples += 1;
            seen.shown += event["entries"].as_array().map_or(0, |e| e.len() as u64);
            seen.skipped += event["skipped"].as_u64().unwrap_or(0);
        }
    }
    seen
}
