//! What answered instead of Redis: when connecting failed because the reply was not
//! Redis's protocol, a plain connection of its own sends `PING` and reads the first
//! bytes that come back, so that the error can show them (an HTTP status line, an SSH
//! banner, …). Only on that failure path, and only over plain TCP.

use std::time::Duration;

use redis::ConnectionAddr;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How many bytes of the reply are shown.
const SHOWN_BYTES: usize = 64;

/// The first bytes (at most [`SHOWN_BYTES`]) the server at `addr` sends back to
/// `PING`, escaped, with `…` when there were more; `None` over TLS or a Unix socket,
/// or when nothing came within `timeout`.
pub(crate) async fn first_reply(addr: &ConnectionAddr, timeout: Duration) -> Option<String> {
    let ConnectionAddr::Tcp(host, port) = addr else { return None };
    let read = async {
        let mut stream = TcpStream::connect((host.as_str(), *port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        // The first piece that comes is enough to tell what answered.
        let mut buffer = [0_u8; SHOWN_BYTES + 1];
        let read = stream.read(&mut buffer).await.ok()?;
        Some(buffer[..read].to_vec())
    };
    let bytes = tokio::time::timeout(timeout, read).await.ok()??;
    shown(&bytes)
}

/// `bytes` as text with control characters escaped, cut at [`SHOWN_BYTES`]; `None` if
/// empty.
fn shown(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let cut = bytes.len().min(SHOWN_BYTES);
    let mut text: String = String::from_utf8_lossy(&bytes[..cut]).escape_debug().collect();
    if bytes.len() > SHOWN_BYTES {
        text.push('…');
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_is_escaped_and_cut() {
        assert_eq!(shown(b"HTTP/1.1 400 Bad Request\r\n").as_deref(), Some("HTTP/1.1 400 Bad Request\\r\\n"));
        let long = shown(&[b'a'; SHOWN_BYTES + 1]).unwrap_or_default();
        assert_eq!(long.chars().filter(|&c| c == 'a').count(), SHOWN_BYTES);
        assert!(long.ends_with('…'));
        assert_eq!(shown(b""), None);
    }
}
