//! A small HTTP/1.1 client over std's `TcpStream`, for the loopback servers the tests and the
//! studio example start themselves (chromedriver, `korm studio`): one request a connection,
//! no TLS (nothing here leaves 127.0.0.1), redirects not followed (a test looks at them).

#![allow(dead_code, unreachable_pub)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response: its status, its headers (names lowercased) and its whole body.
#[derive(Debug)]
pub struct Response {
    /// The status code (200, 303, 403...).
    pub status: u16,
    /// The headers in the order received, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` to `authority` (`127.0.0.1:PORT`, also the `Host` unless `headers`
/// has one) with `headers` and `body`, and reads the whole response. A server that says nothing for a minute is an error, not a hang.
///
/// # Errors
/// The connection's I/O errors, and `InvalidData` for a response that is not HTTP/1.x.
pub fn request(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    // The authority is the Host, unless the caller sends another (a test of a Host check).
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {authority}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    read_response(BufReader::new(stream), method == "HEAD")
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn read_response(mut reader: impl BufRead, head_only: bool) -> io::Result<Response> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("not an HTTP/1.x status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(invalid("the connection closed inside the headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| invalid(format!("a header without a colon: {header:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        // No body, whatever the headers say.
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("a bad chunk size: {line:?}")))?;
            if size == 0 {
                // The trailers, up to the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(length) = find("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("a bad content-length: {length:?}")))?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// `value` percent-encoded for a query string: everything but RFC 3986's unreserved
/// characters is escaped, so an RN's brackets and colons survive the trip.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[test]
fn chunked_and_sized_bodies_are_read_whole() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let response = read_response(&chunked[..], false).expect("chunked");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "hello world")
    );
    let sized = b"HTTP/1.1 303 See Other\r\nLocation: /\r\nContent-Length: 2\r\n\r\nokTRAILING";
    let response = read_response(&sized[..], false).expect("sized");
    assert_eq!(response.status, 303);
    assert_eq!(response.header("LOCATION"), Some("/"));
    assert_eq!(response.text(), "ok");
    assert!(read_response(&b"SSH-2.0-x\r\n"[..], false).is_err());
    assert_eq!(
        encode("[rn][from::a]:b:*"),
        "%5Brn%5D%5Bfrom%3A%3Aa%5D%3Ab%3A%2A"
    );
}
