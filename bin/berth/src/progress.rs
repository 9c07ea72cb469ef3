//! Prints the daemon's JSON message stream (load, import) as docker does:
//! `stream` text as it comes, `status` lines, and on a terminal one progress
//! bar per layer id.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use futures_util::{Stream, StreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::client::Failure;

/// One message of the stream, whichever endpoint sent it.
pub struct Message {
    pub id: Option<String>,
    pub status: Option<String>,
    pub stream: Option<String>,
    pub current: Option<i64>,
    pub total: Option<i64>,
    pub error: Option<String>,
}

impl From<bollard::models::BuildInfo> for Message {
    fn from(info: bollard::models::BuildInfo) -> Message {
        let detail = info.progress_detail.unwrap_or_default();
        Message {
            id: info.id,
            status: info.status,
            stream: info.stream,
            current: detail.current,
            total: detail.total,
            error: info.error_detail.and_then(|e| e.message),
        }
    }
}

impl From<bollard::models::CreateImageInfo> for Message {
    fn from(info: bollard::models::CreateImageInfo) -> Message {
        let detail = info.progress_detail.unwrap_or_default();
        Message {
            id: info.id,
            status: info.status,
            stream: None,
            current: detail.current,
            total: detail.total,
            error: info.error_detail.and_then(|e| e.message),
        }
    }
}

impl From<bollard::models::PushImageInfo> for Message {
    fn from(info: bollard::models::PushImageInfo) -> Message {
        let detail = info.progress_detail.unwrap_or_default();
        Message {
            id: None,
            status: info.status,
            stream: None,
            current: detail.current,
            total: detail.total,
            error: info.error_detail.and_then(|e| e.message),
        }
    }
}

/// Where the messages go: stdout (load, import), stderr (the pull before
/// `run`), or nowhere (`run --quiet`).
#[derive(Clone, Copy, PartialEq)]
pub enum Sink {
    Stdout,
    Stderr,
    Discard,
}

/// Prints every message of `messages` to stdout; the first error ends it.
pub async fn display<S, T>(messages: S) -> Result<(), Failure>
where
    S: Stream<Item = Result<T, bollard::errors::Error>> + Unpin,
    T: Into<Message>,
{
    display_to(messages, Sink::Stdout).await
}

/// Prints every message of `messages` to `sink`; the first error ends it.
pub async fn display_to<S, T>(messages: S, sink: Sink) -> Result<(), Failure>
where
    S: Stream<Item = Result<T, bollard::errors::Error>> + Unpin,
    T: Into<Message>,
{
    let (mut out, terminal): (Box<dyn Write>, bool) = match sink {
        Sink::Stdout => (Box::new(std::io::stdout()), std::io::stdout().is_terminal()),
        Sink::Stderr => (Box::new(std::io::stderr()), std::io::stderr().is_terminal()),
        Sink::Discard => (Box::new(std::io::sink()), false),
    };
    let bars = if sink == Sink::Discard {
        MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    } else {
        MultiProgress::new()
    };
    let mut by_id: HashMap<String, ProgressBar> = HashMap::new();
    let style = ProgressStyle::with_template("{prefix}: {msg} [{bar:50}] {bytes}/{total_bytes}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut messages = messages;
    while let Some(message) = messages.next().await {
        let message: Message = message?.into();
        if let Some(error) = message.error {
            return Err(Failure::Message(error));
        }
        if let Some(text) = &message.stream {
            bars.suspend(|| {
                let _ = out.write_all(text.as_bytes());
            });
            continue;
        }
        let Some(status) = message.status else {
            continue;
        };
        let has_progress = message.total.is_some_and(|t| t > 0) || message.current.is_some();
        match (&message.id, terminal) {
            (Some(id), true) if has_progress => {
                let bar = by_id.entry(id.clone()).or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new(0));
                    bar.set_style(style.clone());
                    bar.set_prefix(id.clone());
                    bar
                });
                bar.set_length(message.total.unwrap_or(0).max(0) as u64);
                bar.set_position(message.current.unwrap_or(0).max(0) as u64);
                bar.set_message(status);
            }
            (Some(_), false) if has_progress => {}
            (Some(id), _) => match by_id.get(id) {
                Some(bar) => bar.finish_with_message(status),
                None => bars.suspend(|| {
                    let _ = writeln!(out, "{id}: {status}");
                }),
            },
            (None, _) => bars.suspend(|| {
                let _ = writeln!(out, "{status}");
            }),
        }
    }
    for bar in by_id.values() {
        if !bar.is_finished() {
            bar.finish();
        }
    }
    let _ = out.flush();
    Ok(())
}
