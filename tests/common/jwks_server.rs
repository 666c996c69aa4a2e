//! A tiny HTTP/1.1 JWKS endpoint for the tests (loopback, port 0): per path a document, a
//! request counter and the last `Authorization` header received.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one path of the JWKS server answers, and what it saw.
struct Served {
    status: u16,
    body: String,
    cache_control: String,
    /// Requests counted on this path.
    count: usize,
    /// The `Authorization` header of the last request on this path.
    authorization: Option<String>,
}

type State = Arc<Mutex<HashMap<String, Served>>>;

pub struct JwksServer {
    pub address: SocketAddr,
    state: State,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl JwksServer {
    pub fn start() -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let state: State = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &state);
                    }
                }
            })
        };
        JwksServer {
            address,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sets what `path` answers (the counter is kept).
    pub fn set(&self, path: &str, status: u16, keys: &[Value], cache_control: &str) {
        let mut state = self.state.lock().unwrap();
        let entry = state.entry(path.to_string()).or_insert(Served {
            status: 404,
            body: String::new(),
            cache_control: String::new(),
            count: 0,
            authorization: None,
        });
        entry.status = status;
        entry.body = json!({ "keys": keys }).to_string();
        entry.cache_control = cache_control.to_string();
    }

    /// Requests served on `path` so far.
    pub fn count(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .get(path)
            .map_or(0, |served| served.count)
    }

    /// The `Authorization` header of the last request on `path`.
    pub fn authorization(&self, path: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .get(path)
            .and_then(|served| served.authorization.clone())
    }

    /// Waits (bounded) until `path` has served at least `count` requests.
    pub fn wait_for_count(&self, path: &str, count: usize) {
        super::wait_until(
            &format!("{path} has served {count} requests"),
            super::PATIENCE,
            || self.count(path) >= count,
        );
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request head and answers it; counting and answering happen under one lock,
/// so every request counted after a `set` got the new document.
fn serve(mut stream: TcpStream, state: &Mutex<HashMap<String, Served>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split(' ').nth(1).unwrap_or("/");
    // The path without its query: documents are set per path.
    let path = path.split('?').next().unwrap_or(path).to_string();
    let authorization = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    let response = {
        let mut state = state.lock().unwrap();
        match state.get_mut(&path) {
            Some(served) => {
                served.count += 1;
                served.authorization = authorization;
                format!(
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nCache-Control: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    served.status,
                    served.cache_control,
                    served.body.len(),
                    served.body
                )
            }
            None => "HTTP/1.1 404 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        }
    };
    let _ = stream.write_all(response.as_bytes());
}
