//! Misbehaving network peers on loopback: a TCP proxy that fails a share of connections (an
//! HTTP 503 "SlowDown" or a connection reset) and forwards the rest, and a black hole that
//! accepts connections and never answers. Both stop when dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

pub struct FaultProxy {
    pub port: u16,
    pub faults: Arc<AtomicUsize>,
    pub forwarded: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Forwards to `upstream`; of every `period` connections, one gets a 503 and one a reset.
    pub fn start(upstream: u16, period: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (s, f, fw) = (stop.clone(), faults.clone(), forwarded.clone());
        thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                match n % period {
                    0 => {
                        f.fetch_add(1, Ordering::SeqCst);
                        thread::spawn(move || slow_down(client));
                    }
                    1 => {
                        f.fetch_add(1, Ordering::SeqCst);
                        reset(client);
                    }
                    _ => {
                        fw.fetch_add(1, Ordering::SeqCst);
                        thread::spawn(move || forward(client, upstream));
                    }
                }
            }
        });
        FaultProxy {
            port,
            faults,
            forwarded,
            stop,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads the request head, answers 503 SlowDown and closes.
fn slow_down(mut c: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = c.read(&mut buf);
    let body =
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let _ = write!(
        c,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = c.shutdown(Shutdown::Both);
}

/// Closes with SO_LINGER 0, so the peer sees a reset.
fn reset(c: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(c);
}

fn forward(client: TcpStream, upstream: u16) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (mut c1, mut s1) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let (mut c2, mut s2) = (client, server);
    let up = thread::spawn(move || {
        let _ = std::io::copy(&mut c1, &mut s1);
        let _ = s1.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut s2, &mut c2);
    let _ = c2.shutdown(Shutdown::Write);
    let _ = up.join();
}

/// Accepts connections and never answers; holds them open until dropped.
pub struct BlackHole {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    held.push(c);
                }
            }
        });
        BlackHole { port, stop }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A proxy that forwards while `up` and resets every connection while down: a store outage
/// that can be switched on and off.
pub struct Switch {
    pub port: u16,
    pub up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Connections forwarded so far: cut when the switch goes down (pooled connections too).
    open: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Switch {
    pub fn start(upstream: u16) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (up, stop) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(false)),
        );
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (u, s, o) = (up.clone(), stop.clone(), open.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                if u.load(Ordering::SeqCst) {
                    if let Ok(c) = client.try_clone() {
                        o.lock().unwrap_or_else(|p| p.into_inner()).push(c);
                    }
                    thread::spawn(move || forward(client, upstream));
                } else {
                    reset(client);
                }
            }
        });
        Switch {
            port,
            up,
            stop,
            open,
        }
    }

    pub fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for c in self
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
            {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}
