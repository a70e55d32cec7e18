//! A minimal client of Pulsar's admin REST API (plain HTTP/1.0 on loopback or an internal
//! network), enough for listing topics and setting policies without a full HTTP stack.

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Sends `method path` with a JSON `body` to `admin_url` (e.g. `http://127.0.0.1:8080`);
/// returns the status code and the body.
pub async fn request(
    admin_url: &str,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let authority = admin_url
        .strip_prefix("http://")
        .with_context(|| format!("the admin URL `{admin_url}` must start with http://"))?
        .trim_end_matches('/')
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("connect to the Pulsar admin API at {admin_url}"))?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .context("send admin request")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .context("read admin response")?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // HTTP/1.0: no chunked encoding, the body is everything after the headers.
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
