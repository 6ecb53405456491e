//! The web page of `agency run --web`, in real browsers: the system's Chromium and Firefox
//! ESR, headless, driven over WebDriver (the harness is `agency_tests::browser`). The
//! security checks that need no browser (tokens, origins, CSRF, Host) speak raw HTTP to
//! the real process.
//!
//! Screenshots of each view go to `target/screenshots/` (the README shows one).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use agency_tests::{
    browser::{click_in, send_form, Browser, Kind},
    chat_server::{ChatServer, Step},
    group::{command_line, wait_gone},
    process::Host,
    PATIENCE,
};
use fantoccini::{elements::Element, Locator};
use serde_json::json;

/// A test agent with every kind of argument, added to the demo's.
const FORMS: &str = "\n[[agents]]\ntype = \"Receiver\"\nid = \"Forms\"\n";

/// The demo's agents (the repository's `agency.toml`) and `Forms`.
fn space() -> String {
    format!("{}{FORMS}", agency_tests::models::demo_config())
}

/// An id a careless page would run as a script.
const MARKUP_ID: &str = r#"<script>window.pwned=1</script><img src=x onerror="window.pwned=2">"#;

/// A host serving the page on a free loopback port, and the URL it printed.
struct Page {
    host: Host,
    url: String,
}

impl Page {
    fn start(config: &str) -> Self {
        let mut host = Host::start(config, &["--web", "127.0.0.1:0", "--wait", "10"]);
        let printed = host.stderr.wait_for("web page: http://");
        let url = printed
            .lines()
            .find_map(|line| line.strip_prefix("web page: "))
            .expect("the URL line")
            .trim()
            .to_owned();
        host.wait_until_started();
        Self { host, url }
    }

    fn addr(&self) -> SocketAddr {
        let rest = self.url.strip_prefix("http://").unwrap();
        rest[..rest.find('/').unwrap()].parse().unwrap()
    }

    fn token(&self) -> &str {
        self.url.split("token=").nth(1).unwrap()
    }
}

/// Sends `/Calculator.divide a:1 b:0` in the chat and sees the error.
async fn divide_by_zero(browser: &Browser) {
    browser.tab("chat").await;
    browser
        .say_and_see(
            "/Calculator.divide a:1 b:0",
            "#chat-log .reply.error",
            "ZeroDivisionError",
        )
        .await;
}

/// Adds 1 and 2 with `calculator`'s form in the agents view and sees 3; answers the
/// calculator's card.
async fn add_one_and_two(browser: &Browser, calculator: &str) -> Element {
    browser.tab("agents").await;
    let heading = browser.find_text("#agent-list .agent h3", calculator).await;
    let card = heading.find(Locator::XPath("..")).await.unwrap();
    send_form(&card, "add", &[("a", "1"), ("b", "2")]).await;
    let result = browser
        .find_text("#agent-list details[data-action=add] .result", "3")
        .await;
    assert_eq!(result.text().await.unwrap().trim(), "3");
    card
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_uses_the_space_from_the_page() {
    let page = Page::start(&space());
    let browser = Browser::open().await;
    browser.client.goto(&page.url).await.unwrap();
    browser.find_text("#status", "connected").await;
    let address = browser.client.current_url().await.unwrap();
    assert!(
        !address.as_str().contains("token"),
        "the token leaves the address bar: {address}"
    );

    // Agents: the demo's, with their actions and access.
    browser.tab("agents").await;
    for id in ["Calculator", "Chatty", "Host", "Forms"] {
        browser.find_text("#agent-list .agent h3", id).await;
    }
    let host = browser.find_text("#agent-list .agent", "Host").await;
    assert!(host.text().await.unwrap().contains("run_command"));
    add_one_and_two(&browser, "Calculator").await;
    browser.screenshot("agents").await;

    // Chat: the console's syntax, its errors, completion.
    divide_by_zero(&browser).await;
    browser
        .say_and_see("/Calculator.add a:1 b:", "#chat-log li.error", "error: ")
        .await;
    browser
        .say_and_see(
            "/Calculater.add a:1 b:2",
            "#chat-log .reply.error",
            "did you mean \"Calculator\"",
        )
        .await;
    browser
        .say_and_see("hello everyone", "#chat-log li", "Chatty:")
        .await;
    let input = browser
        .client
        .find(Locator::Id("chat-input"))
        .await
        .unwrap();
    input.send_keys("/Calc").await.unwrap();
    browser.find_text("#completions li", "Calculator").await;
    input.send_keys("\u{E004}").await.unwrap(); // Tab
    assert_eq!(
        input.prop("value").await.unwrap().as_deref(),
        Some("/Calculator.")
    );
    input.send_keys("sq\u{E004}").await.unwrap();
    assert_eq!(
        input.prop("value").await.unwrap().as_deref(),
        Some("/Calculator.sqrt ")
    );
    input.send_keys("\u{E004}").await.unwrap();
    assert_eq!(
        input.prop("value").await.unwrap().as_deref(),
        Some("/Calculator.sqrt x:")
    );
    input.send_keys("16").await.unwrap();
    browser
        .click(Locator::Css("#chat-form button[type=submit]"))
        .await;
    browser.find_text("#chat-log .reply", "4").await;
    browser.screenshot("chat").await;

    // Permission questions: allowed from the page, then refused.
    browser
        .say_and_see(
            r#"/Host.run_command command:echo args:["from the page"]"#,
            "#permission",
            "run_command",
        )
        .await;
    let asked = browser.client.find(Locator::Id("q-args")).await.unwrap();
    assert!(asked.text().await.unwrap().contains("from the page"));
    assert_eq!(
        browser
            .client
            .find(Locator::Id("q-from"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "User-web"
    );
    browser.screenshot("permission").await;
    browser.click_id("allow").await;
    browser.find_text("#chat-log .reply", "from the page").await;
    browser
        .find_text("#chat-log li.info", "allowed by the web page")
        .await;
    page.host
        .stdout
        .wait_for("allowed by the web page: User-web -> Host.run_command");
    browser.dialog_closed().await;
    browser
        .say_and_see(
            "/Host.read_file path:/etc/hostname",
            "#permission",
            "read_file",
        )
        .await;
    browser.click_id("refuse").await;
    browser
        .find_text("#chat-log .reply.error", "PermissionError")
        .await;
    browser.dialog_closed().await;

    // Traffic: a message two other agents exchange (the console and the Calculator).
    browser.show_traffic().await;
    let mut host = page.host;
    host.type_line("/Calculator.multiply a:6 b:7");
    host.type_line("/Nobody.add a:1");
    let request = browser.find_text("#traffic-rows tr.row", "multiply").await;
    let text = request.text().await.unwrap();
    assert!(
        text.contains("User") && text.contains("Calculator"),
        "{text}"
    );
    browser
        .find_text("#traffic-rows tr.row", "[response]")
        .await;
    let reply = browser
        .find_text("#traffic-rows tr.row", "multiply (")
        .await;
    assert!(reply.text().await.unwrap().contains("[response]"));
    request.click().await.unwrap();
    browser
        .find_text("#traffic-rows tr.details", "\"a\": 6")
        .await;
    browser.find_text("#traffic-rows tr.dead", "Nobody").await;
    browser.find_text("#rates li", "User").await;
    browser.screenshot("traffic").await;

    // The first answer wins: asked of both, answered at the console.
    browser.tab("chat").await;
    browser
        .say_and_see(
            r#"/Host.run_command command:echo args:["console decides"]"#,
            "#permission",
            "console decides",
        )
        .await;
    host.stdout
        .wait_for("permission: allow User-web -> Host.run_command");
    host.type_line("y");
    browser
        .find_text("#q-outcome", "Allowed by the console")
        .await;
    browser
        .find_text("#chat-log .reply", "console decides")
        .await;
    browser.close().await;
    // The console's one failed line: the message to nobody.
    let output = host.finish_with_code(1);
    assert!(
        output.contains("allowed User-web -> Host.run_command"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_amqp_the_page_finds_and_uses_agents_of_other_hosts() {
    use agency_tests::{broker::host_config, unique_name};
    let exchange = unique_name("agency-test-web");
    let mut far = Host::start(
        &host_config(&exchange, "far-console", &[("Calculator", "FarCalculator")]),
        &[],
    );
    far.wait_until_started();
    let page = Page::start(&host_config(
        &exchange,
        "near-console",
        &[("Chat", "NearChat")],
    ));
    let browser = Browser::open().await;
    browser.client.goto(&page.url).await.unwrap();
    let card = add_one_and_two(&browser, "FarCalculator").await;
    let text = card.text().await.unwrap();
    assert!(text.contains("on another host"), "{text}");
    browser.tab("chat").await;
    browser
        .say_and_see(
            "/FarCalculator.sqrt x:-1",
            "#chat-log .reply.error",
            "ValueError",
        )
        .await;
    // A Python Agency agent is found by its answer to the broadcast `help`.
    let (mut python, _) = agency_tests::python::start_agent(&exchange, "PyShouter");
    browser.tab("agents").await;
    browser.click_id("refresh-agents").await;
    let card = browser.find_text("#agent-list .agent", "PyShouter").await;
    send_form(&card, "shout", &[("text", "hello from the page")]).await;
    browser
        .find_text("details[data-action=shout] .result", "HELLO FROM THE PAGE")
        .await;
    drop(python.stdin.take());
    python.wait().unwrap();
    // The traffic view shows what this host's agents send.
    browser.show_traffic().await;
    let mut near = page.host;
    near.type_line("/FarCalculator.multiply a:6 b:7");
    near.stdout.wait_for("FarCalculator: 42");
    let row = browser.find_text("#traffic-rows tr.row", "multiply").await;
    assert!(row.text().await.unwrap().contains("near-console"));
    browser.close().await;
    near.finish();
    far.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_follow_the_json_schema_of_each_argument() {
    let page = Page::start(&space());
    let browser = Browser::open().await;
    browser.client.goto(&page.url).await.unwrap();
    browser.tab("agents").await;
    let forms = browser.find_text("#agent-list .agent", "profile").await;
    let profile = forms
        .find(Locator::Css("details[data-action=profile]"))
        .await
        .unwrap();
    click_in(&profile, "summary").await;
    let field = |arg: &str, css: &str| format!(".field[data-arg={arg}] {css}");
    let fill = |css: String, text: &'static str| {
        let profile = profile.clone();
        async move {
            profile
                .find(Locator::Css(&css))
                .await
                .unwrap()
                .send_keys(text)
                .await
                .unwrap()
        }
    };
    fill(field("name", "input"), "Ada").await;
    fill(field("age", "input[type=number]"), "36").await;
    click_in(&profile, &field("admin", "input[type=checkbox]")).await;
    click_in(&profile, &field("tags", "button.add-item")).await;
    click_in(&profile, &field("tags", "button.add-item")).await;
    let tags = profile
        .find_all(Locator::Css(&field("tags", ".item input")))
        .await
        .unwrap();
    assert_eq!(tags.len(), 2, "two list items");
    tags[0].send_keys("math").await.unwrap();
    tags[1].send_keys("engines").await.unwrap();
    fill(field("home", ".field[data-arg=x] input"), "1.5").await;
    fill(field("home", ".field[data-arg=y] input"), "-2").await;
    // `nickname` is optional: left out unless switched on.
    let nickname = profile
        .find(Locator::Css(&field("nickname", "input[type=text]")))
        .await
        .unwrap();
    assert!(
        !nickname.is_displayed().await.unwrap(),
        "hidden until included"
    );
    click_in(&profile, "button.primary").await;
    let result = browser
        .find_text("details[data-action=profile] .result", "Ada")
        .await;
    let value: serde_json::Value =
        serde_json::from_str(&result.text().await.unwrap()).expect("the answer, as JSON");
    assert_eq!(
        value,
        json!({"name": "Ada", "age": 36, "admin": true, "tags": ["math", "engines"],
               "home": [1.5, -2], "nickname": null})
    );
    click_in(&profile, &field("nickname", "input.include")).await;
    fill(field("nickname", "input[type=text]"), "Countess").await;
    click_in(&profile, "button.primary").await;
    browser
        .find_text("details[data-action=profile] .result", "Countess")
        .await;
    // The access policy is shown.
    let forbidden = forms
        .find(Locator::Css("details[data-action=forbidden] .access"))
        .await
        .unwrap();
    assert_eq!(forbidden.text().await.unwrap(), "denied");
    browser.close().await;
    page.host.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_text_is_shown_as_text_never_run() {
    let config = format!(
        "{}\n[[agents]]\ntype = \"Chat\"\nid = {}\n",
        space(),
        toml_string(MARKUP_ID)
    );
    let page = Page::start(&config);
    let browser = Browser::open().await;
    browser.client.goto(&page.url).await.unwrap();
    browser.tab("agents").await;
    let heading = browser.find_text("#agent-list .agent h3", "<script>").await;
    assert_eq!(heading.text().await.unwrap(), MARKUP_ID);
    browser.tab("chat").await;
    browser
        .say_and_see("<b>bold?</b>", "#chat-log li.sent", "<b>bold?</b>")
        .await;
    let answer = browser
        .find_text(
            "#chat-log li",
            &format!("{MARKUP_ID} heard User-web say: <b>bold?</b>"),
        )
        .await;
    assert!(answer.text().await.unwrap().starts_with(MARKUP_ID));
    assert_eq!(
        browser.eval("return window.pwned === undefined").await,
        json!(true)
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#chat-log script, #agent-list script, #chat-log img, #agent-list img').length")
            .await,
        json!(0)
    );
    browser.screenshot("markup-as-text").await;
    browser.close().await;
    page.host.finish();
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// Sends raw HTTP and answers the status code and the whole answer.
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0; 4096];
    // Enough for the status line and headers (a WebSocket that is accepted stays open).
    while let Ok(read @ 1..) = stream.read(&mut buffer) {
        answer.extend_from_slice(&buffer[..read]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && !request.starts_with("POST") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    (status, answer)
}

#[test]
fn without_the_token_nothing_is_served_and_other_sites_are_refused() {
    let page = Page::start(&space());
    let addr = page.addr();
    let host = format!("127.0.0.1:{}", addr.port());
    let token = page.token().to_owned();
    let get = |path: &str, headers: &str| {
        http(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"),
        )
    };
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let ws = |headers: &str| {
        http(
            addr,
            &format!("GET /api/events HTTP/1.1\r\nHost: {host}\r\n{upgrade}{headers}\r\n"),
        )
    };
    // No token: 401 on the page, the API and the WebSocket; a wrong one the same.
    assert_eq!(get("/", "").0, 401);
    assert_eq!(get("/api/agents", "").0, 401);
    assert_eq!(get("/app.js", "").0, 401);
    assert_eq!(ws("").0, 401);
    assert_eq!(get("/?token=0123", "").0, 401);
    assert_eq!(get("/api/agents", "Cookie: agency_token=nope\r\n").0, 401);
    // The token in the URL: the page, and the cookie for what follows.
    let (status, answer) = get(&format!("/?token={token}"), "");
    assert_eq!(status, 200);
    let cookie_line = answer
        .lines()
        .find(|line| line.to_lowercase().starts_with("set-cookie:"))
        .expect("a cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", &token] {
        assert!(cookie_line.contains(attribute), "{cookie_line}");
    }
    let cookie = format!("Cookie: agency_token_{}={token}\r\n", addr.port());
    assert_eq!(get("/api/agents", &cookie).0, 200);
    assert!(answer
        .to_lowercase()
        .contains("content-security-policy: default-src 'none'"));
    // A WebSocket from another origin is refused, from the page's own accepted.
    assert_eq!(
        ws(&format!("{cookie}Origin: http://evil.example\r\n")).0,
        403
    );
    assert_eq!(ws(&format!("{cookie}Origin: http://{host}\r\n")).0, 101);
    // A POST needs the page's CSRF token and origin.
    let csrf = {
        let marker = "name=\"csrf-token\" content=\"";
        let start = answer.find(marker).unwrap() + marker.len();
        answer[start..start + 64].to_owned()
    };
    let post = |headers: &str| {
        let body = r#"{"line":"/Calculator.add a:1 b:2"}"#;
        http(
            addr,
            &format!(
                "POST /api/line HTTP/1.1\r\nHost: {host}\r\n{cookie}{headers}\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    assert_eq!(post("").0, 403, "no CSRF token");
    assert_eq!(
        post(&format!(
            "X-CSRF-Token: {csrf}\r\nOrigin: http://evil.example\r\n"
        ))
        .0,
        403,
        "another origin"
    );
    let (status, answer) = post(&format!(
        "X-CSRF-Token: {csrf}\r\nOrigin: http://{host}\r\n"
    ));
    assert_eq!(status, 200, "{answer}");
    // A name that is not the page's (DNS rebinding) is refused, token or not.
    let (status, _) = http(
        addr,
        &format!("GET /api/agents HTTP/1.1\r\nHost: evil.example:{}\r\n{cookie}Connection: close\r\n\r\n", addr.port()),
    );
    assert_eq!(status, 421);
    page.host.finish();
}

#[test]
fn the_page_is_served_on_other_addresses_only_when_asked_and_a_taken_port_is_an_error() {
    let refused = agency_tests::process::run_piped(&space(), &["--web", "0.0.0.0:0"], "");
    assert!(!refused.status.success());
    let stderr = agency_tests::process::text(&refused.stderr);
    assert!(stderr.contains("--web-public"), "{stderr}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let busy = agency_tests::process::run_piped(&space(), &["--web", &address], "");
    assert_eq!(busy.status.code(), Some(1));
    let stderr = agency_tests::process::text(&busy.stderr);
    assert!(
        stderr.contains(&format!("cannot serve the web page on {address}")),
        "{stderr}"
    );
    let mut public = Host::start(&space(), &["--web", "0.0.0.0:0", "--web-public"]);
    public.stderr.wait_for("reachable from other machines");
    public.stderr.wait_for("web page: http://localhost:");
    public.wait_until_started();
    public.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_in_firefox() {
    let page = Page::start(&space());
    let browser = Browser::open_kind(Kind::Firefox).await;
    browser.client.goto(&page.url).await.unwrap();
    browser.find_text("#status", "connected").await;
    add_one_and_two(&browser, "Calculator").await;
    divide_by_zero(&browser).await;
    browser
        .say_and_see(
            r#"/Host.run_command command:echo args:["in firefox"]"#,
            "#permission",
            "run_command",
        )
        .await;
    browser.click_id("allow").await;
    browser.find_text("#chat-log .reply", "in firefox").await;
    browser.dialog_closed().await;
    browser.show_traffic().await;
    let mut host = page.host;
    host.type_line("/Calculator.multiply a:6 b:7");
    browser.find_text("#traffic-rows tr.row", "multiply").await;
    browser.screenshot("firefox-traffic").await;
    browser.close().await;
    host.finish();
}

/// The Health view plots the host's counts while traffic flows, in both browsers: the
/// rate of the agent type that handles it appears, is positive, and the lines grow with
/// each sample; the latency and mailbox charts show values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_view_plots_the_traffic_as_it_flows() {
    const CALCULATOR: &str = "[[agents]]\ntype = \"Calculator\"\nid = \"Calculator\"\n";
    for kind in [Kind::Chromium, Kind::Firefox] {
        let mut page = Page::start(CALCULATOR);
        let browser = Browser::open_kind(kind).await;
        browser.client.goto(&page.url).await.unwrap();
        browser.find_text("#status", "connected").await;
        browser.tab("health").await;
        let value =
            |css: &str| format!("return document.querySelector('{css}')?.dataset.value ?? null");
        let points =
            "return (document.querySelector('#chart-rate polyline[data-series=Calculator]')\
                      ?.getAttribute('points') ?? '').split(' ').filter(Boolean).length";
        let deadline = Instant::now() + PATIENCE * 4;
        let mut sent = 0;
        loop {
            page.host.type_line("/Calculator.add a:1 b:2");
            sent += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let rate = browser
                .eval(&value("#chart-rate li[data-series=Calculator]"))
                .await;
            let rate: f64 = rate.as_str().and_then(|r| r.parse().ok()).unwrap_or(0.0);
            let drawn = browser.eval(points).await.as_u64().unwrap_or(0);
            if rate > 0.0 && drawn >= 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{kind:?}: after {sent} additions the rate shows {rate}, {drawn} points"
            );
        }
        let p50 = browser
            .eval(&value("#chart-latency li[data-series=p50]"))
            .await;
        assert!(
            p50.as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|ms| ms > 0.0),
            "{kind:?}: p50 {p50}"
        );
        let queued = browser
            .eval(&value("#chart-mailbox li[data-series=\"in all\"]"))
            .await;
        assert!(
            queued.as_str().is_some_and(|v| v.parse::<f64>().is_ok()),
            "{kind:?}: {queued}"
        );
        let before = browser.eval(points).await.as_u64().unwrap();
        for _ in 0..25 {
            page.host.type_line("/Calculator.add a:1 b:2");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let after = browser.eval(points).await.as_u64().unwrap();
        assert!(
            after > before,
            "{kind:?}: the rate line stays at {before} points"
        );
        if kind == Kind::Chromium {
            browser.screenshot("health").await;
        }
        browser.close().await;
        page.host.finish();
    }
}

/// The processes of `browser`'s group, after checking that the browser itself and its
/// helpers are among them (so that "all of them gone" means the browser is gone).
fn browser_processes(browser: &Browser, kind: Kind) -> Vec<u32> {
    let processes = browser.processes();
    let program = match kind {
        Kind::Chromium => "chromium",
        Kind::Firefox => "firefox",
    };
    let lines: Vec<String> = processes.iter().map(|pid| command_line(*pid)).collect();
    let browsers = lines.iter().filter(|line| line.contains(program)).count();
    assert!(
        browsers >= 2,
        "{kind:?}: the browser and its helpers are in the WebDriver server's group: {lines:#?}"
    );
    processes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_browser_process_outlives_its_test_even_one_that_panics() {
    for kind in [Kind::Chromium, Kind::Firefox] {
        // A test that ends: it closes its browser.
        let browser = Browser::open_kind(kind).await;
        let processes = browser_processes(&browser, kind);
        browser.close().await;
        let left = wait_gone(&processes, PATIENCE);
        assert!(left.is_empty(), "{kind:?} after close: {left:?} still run");

        // A test that fails halfway: its browser is dropped while the panic unwinds.
        let (opened, processes) = tokio::sync::oneshot::channel();
        let failed = tokio::spawn(async move {
            let browser = Browser::open_kind(kind).await;
            opened.send(browser_processes(&browser, kind)).unwrap();
            panic!("a web test fails halfway (this panic is part of the test)");
        })
        .await;
        assert!(failed.unwrap_err().is_panic());
        let processes = processes.await.unwrap();
        let left = wait_gone(&processes, PATIENCE);
        assert!(
            left.is_empty(),
            "{kind:?} after a panic: {left:?} still run"
        );
    }
}

/// The Assistant's tool calls are requests like any other on the page: they show in the
/// traffic view, and one that needs permission asks the page, which refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assistants_tool_calls_show_on_the_page_and_ask_it_for_permission() {
    let server = ChatServer::start(
        None,
        vec![
            Step::calls(&[("c1", "Calculator__multiply", json!({"a": 6, "b": 7}))]),
            Step::calls(&[("c2", "Host__read_file", json!({"path": "/etc/hostname"}))]),
            Step::text("Six times seven is 42; the file I may not read."),
        ],
    );
    let config = format!(
        "transport = \"local\"\nconsole_id = \"User\"\n\n[[agents]]\ntype = \"Calculator\"\nid = \"Calculator\"\n\n\
         [[agents]]\ntype = \"Host\"\nid = \"Host\"\n\n[[agents]]\ntype = \"Assistant\"\nid = \"Assistant\"\n\
         args = {{ endpoint = \"{}\", model = \"scripted-model\" }}\n",
        server.endpoint()
    );
    let page = Page::start(&config);
    let browser = Browser::open().await;
    browser.client.goto(&page.url).await.unwrap();
    browser.find_text("#status", "connected").await;
    // The traffic view is live only while shown: the console asks, the page watches.
    browser.show_traffic().await;
    let mut host = page.host;
    host.type_line(
        r#"/Assistant.say content:"What is six times seven, and what is in /etc/hostname?""#,
    );
    browser.find_text("#permission", "read_file").await;
    let from = browser.client.find(Locator::Id("q-from")).await.unwrap();
    assert_eq!(from.text().await.unwrap(), "Assistant");
    browser.click_id("refuse").await;
    host.stdout
        .wait_for("Assistant: Six times seven is 42; the file I may not read.");
    let row = browser.find_text("#traffic-rows tr.row", "multiply").await;
    assert!(row.text().await.unwrap().contains("Assistant"));
    let refused = browser.find_text("#traffic-rows tr.row", "[error]").await;
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("Host Assistant [error]"));
    assert!(refused.text().await.unwrap().contains("read_file"));
    browser.dialog_closed().await;
    browser.screenshot("assistant-traffic").await;
    assert_eq!(server.problems(), Vec::<String>::new());
    browser.close().await;
    host.finish();
}
