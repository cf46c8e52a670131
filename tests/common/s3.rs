//! An S3 server for tests (moto, started on a free loopback port and stopped on drop) and a
//! fault proxy to put between cachevault and it: answers 503, cuts connections mid-request,
//! or refuses everything.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Credentials every test server accepts; set in the environment of cachevault processes.
pub const ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "cachevault-test"),
    ("AWS_SECRET_ACCESS_KEY", "cachevault-test-secret"),
    ("AWS_REGION", "us-east-1"),
    // Make failing tests fail fast, not after minutes of backoff.
    ("CACHEVAULT_S3_RETRIES", "4"),
];

/// Sets [`ENV`] in this process (for library tests); the same values every time.
pub fn set_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, v) in ENV {
            std::env::set_var(k, v);
        }
        std::env::remove_var("AWS_ENDPOINT_URL");
        std::env::remove_var("AWS_PROFILE");
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto S3 server of this test's own.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts moto; `None` (after [`super::require`] said why) when it is not installed.
    pub fn start() -> Option<Moto> {
        if !super::require(
            "moto_server",
            "S3 tests need moto (pip install 'moto[server]')",
        ) {
            return None;
        }
        set_env();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server starts");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if http(port, "GET", "/", b"").is_some_and(|(code, _)| code == 200) {
                    return Some(Moto { child, port });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start on any of 5 ports");
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub fn bucket(&self, name: &str) {
        let (code, body) = http(self.port, "PUT", &format!("/{name}"), b"").expect("moto answers");
        assert_eq!(code, 200, "creating bucket {name}: {body}");
    }

    /// A repository URL in this server.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{bucket}/{prefix}", self.port)
    }

    /// Object keys under `bucket/prefix`, via a ListObjectsV2 request.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (code, body) = http(
            self.port,
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}&max-keys=1000"),
            b"",
        )
        .expect("moto answers");
        assert_eq!(code, 200, "{body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// Deletes one object.
    pub fn delete(&self, bucket: &str, key: &str) {
        let (code, body) =
            http(self.port, "DELETE", &format!("/{bucket}/{key}"), b"").expect("moto answers");
        assert!(code == 204 || code == 200, "{body}");
    }

    /// Writes one object.
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        let (code, body) =
            http(self.port, "PUT", &format!("/{bucket}/{key}"), data).expect("moto answers");
        assert_eq!(code, 200, "{body}");
    }

    /// Reads one object.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let (code, body) =
            http_raw(self.port, "GET", &format!("/{bucket}/{key}"), b"").expect("moto answers");
        assert_eq!(code, 200);
        body
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request, `Connection: close`; the status and the body as text.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    http_raw(port, method, path, body).map(|(c, b)| (c, String::from_utf8_lossy(&b).into_owned()))
}

fn http_raw(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let end = find(&out, b"\r\n\r\n")?;
    let status = std::str::from_utf8(&out[..end])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
    let mut body = out[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = unchunk(&body);
    }
    Some((status, body))
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
    out
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// What the fault proxy does to the requests it sees.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Answer this many of the next requests with 503 Slow Down (a transient error).
    pub fail_next: usize,
    /// Requests whose method+path contains this text (e.g. "PUT /bkt/x/archives")...
    pub when: Option<String>,
    /// ...are cut off after forwarding this many bytes of them (the connection is closed).
    pub cut_after: Option<usize>,
    /// ...and only the first this many of them (then requests pass again); 0 = all.
    pub times: usize,
    /// Answer every request with 503: the service is down.
    pub down: bool,
}

/// A request-level HTTP proxy on a free loopback port in front of `upstream`.
pub struct FaultProxy {
    pub port: u16,
    pub faults: Arc<Mutex<Faults>>,
    /// Requests seen, and requests the proxy broke.
    pub seen: Arc<AtomicUsize>,
    pub broken: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let seen = Arc::new(AtomicUsize::new(0));
        let broken = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s, b, st) = (faults.clone(), seen.clone(), broken.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let (f, s, b) = (f.clone(), s.clone(), b.clone());
                        std::thread::spawn(move || serve(c, upstream, &f, &s, &b));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            port,
            faults,
            seen,
            broken,
            stop,
        }
    }

    pub fn set(&self, f: Faults) {
        *self.faults.lock().unwrap() = f;
    }

    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{bucket}/{prefix}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves one request of a client connection over a fresh upstream connection, then closes
/// both (every response says `Connection: close`, so clients open a new one per request).
fn serve(
    mut c: TcpStream,
    upstream: u16,
    faults: &Mutex<Faults>,
    seen: &AtomicUsize,
    broken: &AtomicUsize,
) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = Vec::new();
    {
        // Read one request: head, then a Content-Length body.
        let Some(head_end) = read_until(&mut c, &mut buf, b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let lower = head.to_ascii_lowercase();
        let len = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let total = head_end + 4 + len;
        while buf.len() < total {
            let mut chunk = [0u8; 65536];
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request: Vec<u8> = buf.drain(..total).collect();
        let line = head.lines().next().unwrap_or_default().to_string();
        seen.fetch_add(1, Ordering::Relaxed);
        // Decide what to do with it.
        let action = {
            let mut f = faults.lock().unwrap();
            if f.down {
                Some(None)
            } else if f.fail_next > 0 {
                f.fail_next -= 1;
                Some(None)
            } else if f.when.as_ref().is_some_and(|w| line.contains(w.as_str()))
                && f.cut_after.is_some()
            {
                let cut = f.cut_after;
                if f.times == 1 {
                    f.when = None;
                }
                f.times = f.times.saturating_sub(1);
                Some(cut)
            } else {
                None
            }
        };
        match action {
            Some(None) => {
                broken.fetch_add(1, Ordering::Relaxed);
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = c.shutdown(Shutdown::Both);
            }
            Some(Some(n)) => {
                // Forward the first n bytes, then cut both sides.
                broken.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut u) = TcpStream::connect(("127.0.0.1", upstream)) {
                    let _ = u.write_all(&request[..n.min(request.len())]);
                    let _ = u.shutdown(Shutdown::Both);
                }
                let _ = c.shutdown(Shutdown::Both);
            }
            None => {
                let Ok(mut u) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                // One request per upstream connection: ask it to close when done.
                let request = force_close(&request, head_end);
                if u.write_all(&request).is_err() {
                    return;
                }
                let mut resp = Vec::new();
                let _ = u.read_to_end(&mut resp);
                let resp = with_close_header(&resp);
                if c.write_all(&resp).is_ok() {
                    let _ = c.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

fn read_until(c: &mut TcpStream, buf: &mut Vec<u8>, pat: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = find(buf, pat) {
            return Some(i);
        }
        let mut chunk = [0u8; 65536];
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn force_close(req: &[u8], head_end: usize) -> Vec<u8> {
    let head = String::from_utf8_lossy(&req[..head_end]);
    let mut out: Vec<String> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_string)
        .collect();
    out.push("Connection: close".into());
    let mut v = out.join("\r\n").into_bytes();
    v.extend_from_slice(b"\r\n\r\n");
    v.extend_from_slice(&req[head_end + 4..]);
    v
}

fn with_close_header(resp: &[u8]) -> Vec<u8> {
    let Some(end) = find(resp, b"\r\n\r\n") else {
        return resp.to_vec();
    };
    force_close(resp, end)
}
