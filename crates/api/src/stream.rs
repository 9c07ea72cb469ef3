//! Bridges between async HTTP bodies and the engine's blocking readers and
//! writers: a request body read as `std::io::Read` on a blocking thread, and
//! a blocking `std::io::Write` turned into a streaming response body.

use std::io::{Read, Write};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;

/// A request body, readable from a blocking thread.
pub struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl BodyReader {
    /// Starts pumping `body` into a bounded channel (back-pressure: at most a
    /// few chunks are buffered); the blocking reader takes them with
    /// `blocking_recv`, so no thread hand-off per chunk.
    pub fn new(body: Body) -> BodyReader {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(64);
        tokio::spawn(async move {
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                let item = chunk.map_err(|e| e.to_string());
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        BodyReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!("reading request body: {e}")))
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A writer whose bytes become a streaming response body.
pub struct BodyWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl BodyWriter {
    pub fn new() -> (BodyWriter, Body) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (BodyWriter { tx }, Body::from_stream(stream))
    }

    /// Ends the body with an error (the client sees a truncated stream).
    pub fn fail(&self, message: String) {
        let _ = self.tx.blocking_send(Err(std::io::Error::other(message)));
    }
}

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
