//! Real browsers for the web page tests: the system's Chromium and Firefox ESR, headless,
//! driven over WebDriver (`chromedriver` from Debian's `chromium-driver`, `geckodriver`
//! from crates.io; `.ci/run` installs them).
//!
//! A [`Browser`] owns its WebDriver server as a process [`Group`]: the browser the server
//! launches, and the browser's own helper processes, are in that group, so
//! [`Browser::close`] (or dropping the `Browser`, as a panicking test does) leaves no
//! process behind. Both browsers run without their crash reporters, whose helper
//! processes would move to a group of their own and so escape.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use serde_json::json;

use crate::group::Group;

/// How long the browser side waits for something to show.
pub const SHOW_PATIENCE: Duration = Duration::from_secs(15);

/// A headless browser under its WebDriver server; [`Browser::close`] or dropping it ends
/// both, and every process they started.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Group,
}

/// Which browser to drive.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    /// Debian's `chromium`, through `chromedriver` (package `chromium-driver`).
    Chromium,
    /// Debian's `firefox-esr`, through `geckodriver` (`cargo install geckodriver`).
    Firefox,
}

/// Where `program` is: on `PATH`, or in cargo's `bin` folder.
pub fn find_program(program: &str, install: &str) -> PathBuf {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin"));
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is missing: {install} (.ci/run does)"))
}

impl Browser {
    /// Opens headless Chromium.
    pub async fn open() -> Self {
        Self::open_kind(Kind::Chromium).await
    }

    /// Opens a headless browser of `kind`.
    pub async fn open_kind(kind: Kind) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (driver, capabilities) = match kind {
            Kind::Chromium => {
                let install = "apt-get install -y chromium chromium-driver";
                let browser = find_program("chromium", install);
                let driver = find_program("chromedriver", install);
                let profile = crate::scratch_dir("chromium-profile");
                let capabilities = json!({"goog:chromeOptions": {
                    "binary": browser,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        "--window-size=1280,800", "--disable-breakpad",
                        format!("--user-data-dir={}", profile.display()),
                    ]
                }});
                let mut command = Command::new(driver);
                command.arg(format!("--port={port}"));
                (command, capabilities)
            }
            Kind::Firefox => {
                let browser = find_program("firefox-esr", "apt-get install -y firefox-esr");
                let driver = find_program("geckodriver", "cargo install geckodriver --locked");
                // A profile under target/ rather than geckodriver's temporary one, which
                // only geckodriver's clean exit would remove.
                let profile = crate::scratch_dir("firefox-profile");
                let capabilities = json!({"moz:firefoxOptions": {
                    "binary": browser,
                    "args": [
                        "-headless", "-width", "1280", "-height", "800",
                        "-profile", profile,
                    ],
                    // Its crash helper would leave the group (as Chromium's would).
                    "env": {"MOZ_CRASHREPORTER_DISABLE": "1"},
                    "prefs": {
                        "app.update.auto": false,
                        "browser.shell.checkDefaultBrowser": false,
                        "network.captive-portal-service.enabled": false,
                        "network.connectivity-service.enabled": false,
                        "datareporting.policy.dataSubmissionEnabled": false,
                    }
                }});
                let mut command = Command::new(driver);
                command.args(["--port", &port.to_string()]);
                (command, capabilities)
            }
        };
        let mut driver = driver;
        let driver = Group::spawn(driver.stdout(Stdio::null()).stderr(Stdio::null()))
            .expect("the WebDriver server starts");
        let deadline = Instant::now() + SHOW_PATIENCE;
        let client = loop {
            let connected =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities.as_object().unwrap().clone())
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await;
            match connected {
                Ok(client) => break client,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("the WebDriver server did not start the browser: {error}"),
            }
        };
        Self { client, driver }
    }

    /// Ends the WebDriver session (the browser quits and removes what it keeps), then
    /// stops the server and whatever of the group is still running.
    pub async fn close(self) {
        // A browser that does not answer is killed with the group all the same.
        let _ = tokio::time::timeout(SHOW_PATIENCE, self.client.clone().close()).await;
    }

    /// The processes of the browser's group alive now: the WebDriver server, the browser
    /// and the browser's helpers.
    pub fn processes(&self) -> Vec<u32> {
        self.driver.members()
    }

    /// The first element `css` matches whose text contains `wanted`, waiting for it.
    pub async fn find_text(&self, css: &str, wanted: &str) -> Element {
        let deadline = Instant::now() + SHOW_PATIENCE;
        let mut seen = Vec::new();
        loop {
            seen.clear();
            for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
                let text = element.text().await.unwrap_or_default();
                if text.contains(wanted) {
                    return element;
                }
                seen.push(text);
            }
            assert!(
                Instant::now() < deadline,
                "no {css} with {wanted:?} within {SHOW_PATIENCE:?}; saw {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the tab named `view`.
    pub async fn tab(&self, view: &str) {
        self.click_id(&format!("tab-{view}")).await;
    }

    /// Shows the traffic view and waits until the host says it is live: every message
    /// sent from then on reaches it.
    pub async fn show_traffic(&self) {
        self.eval("document.getElementById('traffic-counts').dataset.live = 'asked'")
            .await;
        self.tab("traffic").await;
        self.find_text("#traffic-counts[data-live=true]", "").await;
    }

    /// Clicks the element with id `id`.
    pub async fn click_id(&self, id: &str) {
        self.click(Locator::Id(id)).await;
    }

    /// Clicks the element `locator` finds.
    pub async fn click(&self, locator: Locator<'_>) {
        self.client
            .find(locator)
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Sends a chat line, then waits for an element `css` whose text contains `wanted`.
    pub async fn say_and_see(&self, line: &str, css: &str, wanted: &str) -> Element {
        self.say(line).await;
        self.find_text(css, wanted).await
    }

    /// Types a chat line and sends it.
    pub async fn say(&self, line: &str) {
        let input = self.client.find(Locator::Id("chat-input")).await.unwrap();
        input.send_keys(line).await.unwrap();
        self.click(Locator::Css("#chat-form button[type=submit]"))
            .await;
    }

    /// Saves a screenshot as `target/screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = crate::target_dir().join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await.unwrap()).unwrap();
        path
    }

    /// Waits until the permission dialog has closed (it shows the outcome for a moment).
    pub async fn dialog_closed(&self) {
        let deadline = Instant::now() + SHOW_PATIENCE;
        while self
            .eval("return document.getElementById('permission').open")
            .await
            != json!(false)
        {
            assert!(
                Instant::now() < deadline,
                "the permission dialog stays open"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page and answers its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }
}

/// Clicks the element `css` finds inside `element`.
pub async fn click_in(element: &Element, css: &str) {
    element
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Opens `action`'s form on an agent's card, fills its plain inputs and sends it.
pub async fn send_form(card: &Element, action: &str, values: &[(&str, &str)]) {
    let form = card
        .find(Locator::Css(&format!("details[data-action={action}]")))
        .await
        .unwrap();
    click_in(&form, "summary").await;
    for (arg, value) in values {
        form.find(Locator::Css(&format!(".field[data-arg={arg}] input")))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    click_in(&form, "button[type=submit]").await;
}
