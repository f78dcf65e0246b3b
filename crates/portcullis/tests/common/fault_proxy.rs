//! A TCP proxy on a free loopback port that can be cut and restored, to put between the
//! gateway and a shared store (PostgreSQL, Redis) without touching the store itself. Cutting
//! closes every connection through it and makes new ones close as soon as they are accepted,
//! so clients see a dead peer at once rather than a timeout; restoring lets new connections
//! through again (clients must reconnect by themselves).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

struct Shared {
    target: SocketAddr,
    /// Whether connections pass; false while cut.
    up: AtomicBool,
    /// The proxy is being dropped: the accept loop ends.
    stopping: AtomicBool,
    /// Both ends of every live connection, so that a cut can close them.
    live: Mutex<Vec<TcpStream>>,
    /// Connections that were let through, since start.
    passed: AtomicUsize,
    /// Connections closed on arrival while cut, since start.
    refused: AtomicUsize,
}

/// A proxy from `127.0.0.1:port` to a target address; stops when dropped.
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy to `127.0.0.1:target_port`, passing connections.
    pub fn start(target_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            target: SocketAddr::from(([127, 0, 0, 1], target_port)),
            up: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
            passed: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(&listener, &s));
        FaultProxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// Closes every connection through the proxy; new ones are closed on arrival.
    pub fn cut(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        let live = std::mem::take(&mut *self.shared.live.lock().unwrap());
        for s in live {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Lets new connections through again.
    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// Connections let through since start.
    pub fn passed(&self) -> usize {
        self.shared.passed.load(Ordering::SeqCst)
    }

    /// Connections closed on arrival (while cut) since start.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees `stopping`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if !shared.up.load(Ordering::SeqCst) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(5)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        {
            let mut live = shared.live.lock().unwrap();
            // A cut may have come between the check above and now.
            if !shared.up.load(Ordering::SeqCst) {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                continue;
            }
            live.push(c3);
            live.push(s3);
        }
        shared.passed.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || pump(client, s2));
        std::thread::spawn(move || pump(server, c2));
    }
}

/// Copies `from` to `to` until either side closes, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
