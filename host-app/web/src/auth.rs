//! Who may use the page, and what keeps other sites out.
//!
//! The page acts as an agent of the space (it can run `requested` actions once someone
//! approves them): it must not be usable by another user of the machine or by a web site
//! the operator visits. Every request passes [`guard`]:
//!
//! 1. **Host**: on a loopback address only `127.0.0.1:PORT`, `localhost:PORT` and
//!    `[::1]:PORT` are served (a DNS-rebinding site names its own host).
//! 2. **Token**: 32 random bytes, printed in the URL by `agency run` (as Jupyter does).
//!    The page served for `/?token=...` sets it as an `HttpOnly`, `SameSite=Strict`
//!    cookie and removes it from the address bar; later requests carry the cookie (or an
//!    `Authorization: Bearer` header, for programs). Without it: `401`.
//! 3. **Origin**: a WebSocket is refused (`403`) when its `Origin` is not this page's
//!    (browsers do not apply CORS to WebSockets). A `POST` needs the same origin and the
//!    page's CSRF token in `X-CSRF-Token` (a header another site cannot set).
//!
//! Every answer forbids framing, sniffing, caching and referrers, and its Content Security
//! Policy allows scripts, styles and connections from the page's own origin only.

use std::net::SocketAddr;

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The secrets and names one served page checks requests against.
pub struct Keys {
    token: String,
    csrf: String,
    cookie: String,
    hosts: Hosts,
}

/// The `Host` values a server on a loopback address answers to: a DNS-rebinding site
/// names its own host. On a public address, any.
pub struct Hosts(Option<Vec<String>>);

impl Hosts {
    /// The names of a server on `addr` (any name if `public`).
    pub fn new(addr: SocketAddr, public: bool) -> Self {
        let port = addr.port();
        Self((!public).then(|| {
            vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ]
        }))
    }

    /// Whether the request's `Host` is one of them.
    pub fn serve(&self, headers: &HeaderMap) -> bool {
        let Some(hosts) = &self.0 else {
            return true;
        };
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        host.is_some_and(|host| hosts.iter().any(|served| served.eq_ignore_ascii_case(host)))
    }
}

impl Keys {
    /// Fresh secrets for a page served on `addr`.
    pub fn new(addr: SocketAddr, public: bool) -> Result<Self, String> {
        let port = addr.port();
        Ok(Self {
            token: random_hex()?,
            csrf: random_hex()?,
            // Cookies ignore ports: two hosts on one machine must not share a name.
            cookie: format!("agency_token_{port}"),
            hosts: Hosts::new(addr, public),
        })
    }

    /// The access token (in the printed URL).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CSRF token the page sends with every `POST`.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The `Set-Cookie` value that lets the browser in from now on.
    pub fn cookie(&self) -> String {
        format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie, self.token
        )
    }

    /// Whether the request carries the token: cookie, bearer header, or `?token=`.
    fn admits(&self, request: &Request) -> bool {
        let headers = request.headers();
        let from_cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|cookies| cookies.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == self.cookie && same(value, &self.token));
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|value| same(value.trim(), &self.token));
        from_cookie || from_header || self.in_query(request)
    }

    /// Whether the URL carries the token (`?token=...`).
    pub fn in_query(&self, request: &Request) -> bool {
        request
            .uri()
            .query()
            .into_iter()
            .flat_map(|query| query.split('&'))
            .filter_map(|pair| pair.split_once('='))
            .any(|(name, value)| name == "token" && same(value, &self.token))
    }
}

/// Whether the request's `Origin`, if any, is this page (`http://` + its `Host`).
pub fn same_origin(headers: &HeaderMap) -> Option<bool> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let matches = |origin: &str, host: &str| {
        origin
            .strip_prefix("http://")
            .is_some_and(|origin| origin.eq_ignore_ascii_case(host))
    };
    Some(matches!((origin, host), (Some(origin), Some(host)) if matches(origin, host)))
}

/// The middleware every route passes: Host, token, Origin and CSRF checks (see the
/// module docs), then the security headers on the answer.
pub async fn guard(
    State(keys): State<std::sync::Arc<Keys>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let refusal = if !keys.hosts.serve(headers) {
        Some((
            StatusCode::MISDIRECTED_REQUEST,
            "this page is served under its loopback address only (see the URL agency printed)",
        ))
    } else if !keys.admits(&request) {
        Some((
            StatusCode::UNAUTHORIZED,
            "401 Unauthorized: open the URL that `agency run --web` printed; it carries the \
             access token",
        ))
    } else if is_websocket(headers) && same_origin(headers) == Some(false) {
        Some((
            StatusCode::FORBIDDEN,
            "403 Forbidden: a WebSocket from another origin",
        ))
    } else if request.method() == Method::POST
        && (same_origin(headers) == Some(false)
            || !headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| same(v, keys.csrf())))
    {
        Some((
            StatusCode::FORBIDDEN,
            "403 Forbidden: a request from another site (missing or wrong X-CSRF-Token)",
        ))
    } else {
        None
    };
    let mut response = match refusal {
        Some((status, text)) => (status, text).into_response(),
        None => next.run(request).await,
    };
    secure(response.headers_mut());
    response
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Adds the headers every answer carries.
pub fn secure(headers: &mut HeaderMap) {
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// Compares secrets in time independent of where they differ.
fn same(given: &str, secret: &str) -> bool {
    given.len() == secret.len()
        && given
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// 32 random bytes from the operating system, as 64 hex digits.
fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers for the token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
        let keys = Keys::new("127.0.0.1:7860".parse().unwrap(), false).unwrap();
        assert_eq!(keys.token().len(), 64);
        assert_ne!(keys.token(), keys.csrf());
    }
}
