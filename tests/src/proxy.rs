//! A TCP proxy to put between a transport and the broker, so a test can cut the line.
//!
//! [`Proxy::cut`] shuts down every connection that passes through it at that moment, as a
//! network failure would; new connections are accepted again at once (the broker is
//! still there), so a client that reconnects gets through. [`Proxy::set_down`] keeps the
//! line down (every new connection is dropped at once) until it is set up again.

use std::{
    io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
};

/// A proxy from a local port to `upstream`; it runs until the test process ends.
pub struct Proxy {
    address: SocketAddr,
    open: Arc<Mutex<Vec<TcpStream>>>,
    down: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts forwarding a free local port to the tests' [`broker`](crate::broker::broker).
    pub fn to_broker() -> Self {
        Self::start(&crate::broker::broker().address())
    }

    /// Starts forwarding a free local port to `upstream` (for example `127.0.0.1:5672`).
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let address = listener.local_addr().expect("proxy address");
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let upstream = upstream.to_owned();
        let sockets = open.clone();
        let down = Arc::new(AtomicBool::new(false));
        let refusing = down.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if refusing.load(Ordering::Acquire) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let Err(error) = forward(client, server, &sockets) {
                    eprintln!("proxy: {error}");
                }
            }
        });
        Self {
            address,
            open,
            down,
        }
    }

    /// The URL of the test process's broker and vhost, through this proxy.
    pub fn amqp_url(&self) -> String {
        crate::broker::broker().url_via(&self.address.to_string())
    }

    /// Takes the line down (cutting what passes now) or brings it back up.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Release);
        if down {
            self.cut();
        }
    }

    /// Drops every connection passing through now; answers how many it cut.
    pub fn cut(&self) -> usize {
        let mut open = self.open.lock().unwrap();
        for socket in open.iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let cut = open.len() / 2;
        open.clear();
        cut
    }
}

/// Copies both ways between `client` and `server` on two threads.
fn forward(client: TcpStream, server: TcpStream, open: &Mutex<Vec<TcpStream>>) -> io::Result<()> {
    open.lock()
        .unwrap()
        .extend([client.try_clone()?, server.try_clone()?]);
    for (mut from, mut to) in [(client.try_clone()?, server.try_clone()?), (server, client)] {
        thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
    Ok(())
}
