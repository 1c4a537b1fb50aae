//! The one way Warden reads the body of a reqwest answer: [`read_capped`], bounded before
//! anything is held. OpenBao's answers go through it (the client maps [`BodyError`] into
//! [`crate::Error::TooLarge`] naming the request), and so do an ACME CA's (warden-keys), each
//! caller naming the server in its own error.
//!
//! Why a cap at all: a misbehaving server or a proxy in front of it can announce or stream an
//! endless answer; read whole, it takes the process's memory with it.

/// How far an answer is read, and what happens past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Past this many bytes the answer is refused ([`BodyError::TooLarge`]), and an announced
    /// `Content-Length` past it is refused before a byte of the body is read.
    Refuse(u64),
    /// Past this many bytes the rest is not read (an error page: its message is at the start).
    Cut(u64),
}

/// Why [`read_capped`] returned no body. Each caller maps it into its own error, naming the
/// server and what it asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Under [`Overflow::Refuse`], the answer announced or streamed more than `limit` bytes.
    #[error("the answer is longer than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The connection failed while the body was being read.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// The body of `resp`, bounded as `overflow` says, in one buffer of exactly its length that is
/// wiped on drop (OpenBao's answers carry tokens and keys). The chunks are kept as they arrive
/// (reqwest's buffers, not ours to wipe) and copied once at the end: no spare capacity, which
/// a wiping drop would touch (RSS), and nothing reserved on the word of a `Content-Length`.
pub async fn read_capped(
    mut resp: reqwest::Response,
    overflow: Overflow,
) -> Result<zeroize::Zeroizing<Vec<u8>>, BodyError> {
    let (limit, refuse) = match overflow {
        Overflow::Refuse(n) => (n, true),
        Overflow::Cut(n) => (n, false),
    };
    if refuse && resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut chunks = Vec::new();
    let mut len = 0usize;
    while let Some(mut chunk) = resp.chunk().await? {
        if len + chunk.len() > cap {
            if refuse {
                return Err(BodyError::TooLarge { limit });
            }
            chunk.truncate(cap - len);
        }
        len += chunk.len();
        chunks.push(chunk);
        if len == cap && !refuse {
            break; // the rest of an error page is not read
        }
    }
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(len));
    for c in &chunks {
        body.extend_from_slice(c);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{answering, chunked};

    /// What `read_capped` makes of the answer `(head, chunks)` under `overflow`.
    async fn body_of(
        (head, chunks): (String, Vec<Vec<u8>>),
        overflow: Overflow,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, BodyError> {
        let addr = answering(head, chunks).await;
        let resp = reqwest::Client::new()
            .get(format!("{addr}/x"))
            .send()
            .await
            .expect("get");
        read_capped(resp, overflow).await
    }

    /// A `Content-Length` past the limit is refused on its word: the server sends one byte of
    /// the announced gigabyte, and nothing waits for the rest.
    #[tokio::test]
    async fn an_announced_length_past_the_limit_is_refused_unread() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n".to_owned();
        let err = body_of((head, vec![b"{".to_vec()]), Overflow::Refuse(1024))
            .await
            .expect_err("too large");
        assert!(
            matches!(err, BodyError::TooLarge { limit: 1024 }),
            "{err:?}"
        );
    }

    /// Chunked, no length announced: refused where the stream passes the limit, and read whole
    /// (across chunks, into a buffer of exactly its length) below it.
    #[tokio::test]
    async fn a_streamed_body_past_the_limit_is_refused() {
        let err = body_of(chunked("200 OK", &[600, 600]), Overflow::Refuse(1024))
            .await
            .expect_err("too large");
        assert!(
            matches!(err, BodyError::TooLarge { limit: 1024 }),
            "{err:?}"
        );

        let body = body_of(chunked("200 OK", &[600, 400]), Overflow::Refuse(1024))
            .await
            .expect("body");
        assert_eq!(body.len(), 1000);
        assert_eq!(body.capacity(), 1000);
    }

    /// An error page is cut, not refused: its status still decides (a 503 is retried).
    #[tokio::test]
    async fn a_cut_body_stops_at_the_limit() {
        let body = body_of(
            chunked("503 Service Unavailable", &[600, 600]),
            Overflow::Cut(1024),
        )
        .await
        .expect("cut, not refused");
        assert_eq!(body.len(), 1024);
    }
}
