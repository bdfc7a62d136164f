//! A minimal HTTP/1.1 keep-alive client on a tokio `TcpStream`.
//!
//! The load generator shares two cores with the server, so every cycle it
//! spends is taken from the thing being measured. A request here is a
//! pre-built byte string written to one persistent connection, and a response
//! is a status line, the few headers that frame the body, and the body: much
//! cheaper per request than a general-purpose client, which makes the ratios
//! fairer. It understands exactly what actix-web sends: `Content-Length` or
//! chunked bodies, and `Connection: close`.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

/// A response: status and body (headers other than framing are dropped).
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("response is not JSON: {e}"))
    }

    /// An error message for an unexpected status, with the start of the body.
    pub fn unexpected(&self, what: &str) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(200).collect();
        format!("{what}: HTTP {} {body}", self.status)
    }
}

/// `GET path` with an optional bearer token.
pub fn get(path: &str, bearer: Option<&str>) -> Vec<u8> {
    build("GET", path, bearer, None)
}

/// `POST path` with a JSON body and an optional bearer token.
pub fn post_json(path: &str, bearer: Option<&str>, body: &serde_json::Value) -> Vec<u8> {
    build("POST", path, bearer, Some(body.to_string().as_bytes()))
}

/// `POST path` with no body and an optional bearer token.
pub fn post(path: &str, bearer: Option<&str>) -> Vec<u8> {
    build("POST", path, bearer, Some(&[]))
}

fn build(method: &str, path: &str, bearer: Option<&str>, body: Option<&[u8]>) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body.unwrap_or_default());
    request
}

/// One persistent connection, reopened when the server closes it or an
/// exchange fails.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Conn { addr, stream: None }
    }

    /// Sends one request and reads its whole response.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let tcp = TcpStream::connect(self.addr).await?;
                tcp.set_nodelay(true)?;
                self.stream.insert(BufReader::new(tcp))
            }
        };
        match exchange(stream, request).await {
            Ok((response, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(response)
            }
            Err(err) => {
                self.stream = None;
                Err(err)
            }
        }
    }
}

/// How the response body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    /// No length: the body runs until the server closes the connection.
    UntilClose,
}

/// Writes `request`, reads the response; also says whether the connection
/// may be reused.
async fn exchange(
    stream: &mut BufReader<TcpStream>,
    request: &[u8],
) -> io::Result<(Response, bool)> {
    stream.get_mut().write_all(request).await?;
    let mut line = String::new();
    read_line(stream, &mut line).await?;
    let status = parse_status(&line)?;

    let mut framing = Framing::UntilClose;
    let mut keep_alive = true;
    loop {
        read_line(stream, &mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(invalid(format!("malformed header line {header:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len = value
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?;
            framing = Framing::Length(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep_alive = false;
        }
    }
    // 1xx, 204 and 304 have no body whatever the headers say.
    if status < 200 || status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    let body = match framing {
        Framing::Length(len) => {
            let mut body = vec![0; len];
            stream.read_exact(&mut body).await?;
            body
        }
        Framing::Chunked => read_chunked(stream, &mut line).await?,
        Framing::UntilClose => {
            keep_alive = false;
            let mut body = Vec::new();
            stream.read_to_end(&mut body).await?;
            body
        }
    };
    Ok((Response { status, body }, keep_alive))
}

async fn read_chunked(stream: &mut BufReader<TcpStream>, line: &mut String) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        read_line(stream, line).await?;
        let size_text = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailers (none expected) up to the empty line.
            loop {
                read_line(stream, line).await?;
                if line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream.read_exact(&mut body[start..]).await?;
        read_line(stream, line).await?; // the CRLF after the chunk
    }
}

/// Reads one line into `line` (cleared first); EOF is an error.
async fn read_line(stream: &mut BufReader<TcpStream>, line: &mut String) -> io::Result<()> {
    line.clear();
    if stream.read_line(line).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "server closed the connection",
        ));
    }
    Ok(())
}

fn parse_status(line: &str) -> io::Result<u16> {
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .filter(|_| line.starts_with("HTTP/1."))
        .ok_or_else(|| invalid(format!("bad status line {:?}", line.trim_end())))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
