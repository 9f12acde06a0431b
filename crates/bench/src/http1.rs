//! A minimal HTTP/1.1 client for the load loops: one request at a time on each keep-alive
//! connection, every request serialized once before the clock starts.
//!
//! Why not reqwest: the load generator shares this 2-core machine with the server it
//! measures. reqwest cost ~55 µs of CPU per request (pool lock, header maps, a task per
//! request), as much as the gateway itself, so at "half load" the machine was ~170% of 200%
//! busy and the HTTP ceiling was the generator's, not the server's. Here a request costs one
//! write and one or two reads.
//!
//! What it reads back: the status line, `Content-Length` and `Connection: close`. A response
//! without a length (chunked, or close-delimited) is an error: neither server measured here
//! sends one, and a silent misread would skew every figure.

use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where requests go: `host:port` and the path of an `http://` URL.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub authority: String,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> io::Result<Target> {
        let rest = url.strip_prefix("http://").ok_or_else(|| invalid(format!("not an http:// URL: {url}")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(invalid(format!("no host in {url}")));
        }
        Ok(Target { authority: authority.to_string(), path: path.to_string() })
    }

    /// A JSON POST of `body`, ready to write.
    pub fn post(&self, body: &[u8]) -> Vec<u8> {
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        );
        let mut r = Vec::with_capacity(head.len() + body.len());
        r.extend_from_slice(head.as_bytes());
        r.extend_from_slice(body);
        r
    }
}

/// One keep-alive connection, opened on first use and again after any error.
pub struct Conn {
    authority: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(t: &Target) -> Conn {
        Conn { authority: t.authority.clone(), stream: None, buf: Vec::with_capacity(4096) }
    }

    /// Write one serialized request and read its response; returns the status code. On any
    /// error the connection is dropped, so the next call starts on a fresh one.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<u16> {
        let r = self.exchange(request).await;
        if !matches!(r, Ok((_, true))) {
            self.stream = None;
        }
        r.map(|(status, _)| status)
    }

    /// The status, and whether the connection can carry another request.
    async fn exchange(&mut self, request: &[u8]) -> io::Result<(u16, bool)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.authority).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let s = self.stream.as_mut().expect("connected above");
        s.write_all(request).await?;
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                let total = head.header_len + head.content_length;
                while self.buf.len() < total {
                    read_more(s, &mut self.buf).await?;
                }
                self.buf.drain(..total);
                return Ok((head.status, head.keep_alive));
            }
            read_more(s, &mut self.buf).await?;
        }
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    if s.read_buf(buf).await? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection mid-response"));
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
struct Head {
    status: u16,
    header_len: usize,
    content_length: usize,
    keep_alive: bool,
}

/// The response head at the start of `buf`, once all of it has arrived.
fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line: {status_line:?}")))?;
    let (mut content_length, mut keep_alive) = (None, status_line.starts_with("HTTP/1.1"));
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| invalid(format!("bad content-length: {value:?}")))?);
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    let content_length = content_length.ok_or_else(|| invalid("response without content-length (chunked or close-delimited)"))?;
    Ok(Some(Head { status, header_len: end + 4, content_length, keep_alive }))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("http://127.0.0.1:8080/integrations/receive/abc").unwrap();
        assert_eq!(t, Target { authority: "127.0.0.1:8080".into(), path: "/integrations/receive/abc".into() });
        assert_eq!(Target::parse("http://h:1").unwrap().path, "/");
        assert!(Target::parse("https://h:1/x").is_err());
        assert!(Target::parse("http:///x").is_err());
    }

    #[test]
    fn serializes_a_post() {
        let t = Target::parse("http://h:1/p").unwrap();
        let r = String::from_utf8(t.post(b"{}")).unwrap();
        assert_eq!(r, "POST /p HTTP/1.1\r\nhost: h:1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
    }

    #[test]
    fn reads_a_head_only_once_complete() {
        let full = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\nContent-Length: 27\r\n\r\n{\"accepted\":1,\"rejected\":0}";
        assert_eq!(parse_head(&full[..20]).unwrap(), None);
        let h = parse_head(full).unwrap().unwrap();
        assert_eq!(h, Head { status: 202, header_len: full.len() - 27, content_length: 27, keep_alive: true });
        let close = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(!parse_head(close).unwrap().unwrap().keep_alive);
    }

    #[test]
    fn refuses_what_it_cannot_delimit() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn talks_to_a_real_server_over_keep_alive() {
        let app = axum::Router::new().route(
            "/p",
            axum::routing::post(|b: axum::body::Bytes| async move { (axum::http::StatusCode::ACCEPTED, format!("{}", b.len())) }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        let t = Target::parse(&format!("http://{addr}/p")).unwrap();
        let mut c = Conn::new(&t);
        for n in [0usize, 10, 100_000] {
            assert_eq!(c.send(&t.post(&vec![b'x'; n])).await.unwrap(), 202);
        }
        let missing = Target::parse(&format!("http://{addr}/nope")).unwrap();
        assert_eq!(c.send(&missing.post(b"{}")).await.unwrap(), 404);
    }
}
