//! The container's log: its output cut into lines (a line longer than
//! 16 KiB becomes partial messages, as dockerd cuts them) and handed to the
//! log driver. With `--log-opt mode=non-blocking` a thread feeds the driver
//! from a buffer of `max-buffer-size` (default 1 MB) and lines that do not
//! fit are dropped, as dockerd's ring buffer does. A failing or panicking
//! driver costs log lines, never the container's output to attached clients.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::SystemTime;

use berth_logs::{LogConfig, LogContext, LogWriter, Message, Stream};

/// dockerd's buffer: a line without a newline after this many bytes is
/// logged as a partial message.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// dockerd's default `max-buffer-size` for `mode=non-blocking`.
const DEFAULT_BUFFER: usize = 1_000_000;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct ContainerLog {
    /// The unfinished line of stdout and of stderr.
    pending: Mutex<[Vec<u8>; 2]>,
    driver: Arc<Mutex<Driver>>,
    /// `mode=non-blocking`: the buffer and the thread that empties it.
    buffered: Option<Buffered>,
}

struct Buffered {
    buffer: Arc<Buffer>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Driver {
    writer: Option<Box<dyn LogWriter>>,
    last_error: Option<String>,
}

impl ContainerLog {
    /// Opens the driver's writer; `Ok(None)` for the `none` driver, which
    /// writes nothing.
    pub(crate) fn open(
        config: &LogConfig,
        ctx: &LogContext,
    ) -> Result<Option<ContainerLog>, String> {
        if config.driver == "none" {
            return Ok(None);
        }
        let writer = match catch_unwind(AssertUnwindSafe(|| berth_logs::open_writer(config, ctx))) {
            Ok(Ok(writer)) => writer,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(panic) => {
                return Err(format!(
                    "log driver {:?} panicked: {}",
                    config.driver,
                    panic_text(&panic)
                ))
            }
        };
        let driver = Arc::new(Mutex::new(Driver {
            writer: Some(writer),
            last_error: None,
        }));
        let buffered = match config.opts.get("mode").map(String::as_str) {
            Some("non-blocking") => {
                let capacity = match config.opts.get("max-buffer-size") {
                    Some(size) => parse_buffer_size(size).ok_or_else(|| {
                        format!("max-buffer-size {size:?}: expected a size such as 4m")
                    })?,
                    None => DEFAULT_BUFFER,
                };
                let buffer = Arc::new(Buffer {
                    state: Mutex::new(BufferState::default()),
                    changed: Condvar::new(),
                    capacity,
                });
                let (thread_buffer, thread_driver) = (buffer.clone(), driver.clone());
                let thread = std::thread::Builder::new()
                    .name("log".into())
                    .stack_size(crate::server::THREAD_STACK)
                    .spawn(move || thread_buffer.feed(&thread_driver))
                    .map_err(|e| format!("start the log thread: {e}"))?;
                Some(Buffered {
                    buffer,
                    thread: Mutex::new(Some(thread)),
                })
            }
            _ => None,
        };
        Ok(Some(ContainerLog {
            pending: Mutex::new([Vec::new(), Vec::new()]),
            driver,
            buffered,
        }))
    }

    /// Adds output read from `stream` at `time`.
    pub(crate) fn write(&self, stream: Stream, data: &[u8], time: SystemTime) {
        let mut pending = lock(&self.pending);
        let mut lines = Vec::new();
        split_lines(&mut pending[index(stream)], data, |line| {
            lines.push(line.to_vec())
        });
        drop(pending);
        for line in lines {
            self.deliver(message(stream, line, time));
        }
    }

    /// The stream ended: an unfinished line is logged as a partial message.
    pub(crate) fn end(&self, stream: Stream) {
        let line = std::mem::take(&mut lock(&self.pending)[index(stream)]);
        if !line.is_empty() {
            self.deliver(message(stream, line, SystemTime::now()));
        }
    }

    fn deliver(&self, message: Message) {
        match &self.buffered {
            Some(buffered) => buffered.buffer.push(message),
            None => lock(&self.driver).write(&message),
        }
    }

    /// Flushes and closes the driver; later output is not logged.
    pub(crate) fn close(&self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.end(stream);
        }
        if let Some(buffered) = &self.buffered {
            buffered.buffer.close();
            if let Some(thread) = lock(&buffered.thread).take() {
                let _ = thread.join();
            }
        }
        let mut driver = lock(&self.driver);
        if let Some(mut writer) = driver.writer.take() {
            match catch_unwind(AssertUnwindSafe(|| writer.close())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("berth-shim: closing the log: {e}"),
                Err(panic) => eprintln!("berth-shim: closing the log: {}", panic_text(&panic)),
            }
        }
    }
}

fn message(stream: Stream, line: Vec<u8>, time: SystemTime) -> Message {
    Message {
        stream,
        line,
        time,
        attrs: BTreeMap::new(),
    }
}

impl Driver {
    fn write(&mut self, message: &Message) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        let text = match catch_unwind(AssertUnwindSafe(|| writer.write(message))) {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => {
                // A driver that panicked is not called again.
                self.writer = None;
                format!(
                    "log driver panicked, logging stopped: {}",
                    panic_text(&panic)
                )
            }
        };
        // The shim's stderr is shim.log: each distinct failure once.
        if self.last_error.as_deref() != Some(text.as_str()) {
            eprintln!("berth-shim: writing the log: {text}");
            self.last_error = Some(text);
        }
    }
}

/// `mode=non-blocking`: messages waiting for the driver.
struct Buffer {
    state: Mutex<BufferState>,
    changed: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct BufferState {
    messages: VecDeque<Message>,
    bytes: usize,
    closed: bool,
    dropped: u64,
}

impl Buffer {
    /// Queues a message, or drops it when the buffer is full (as dockerd).
    fn push(&self, message: Message) {
        let mut state = lock(&self.state);
        if state.closed {
            return;
        }
        let size = message.line.len();
        if !state.messages.is_empty() && state.bytes + size > self.capacity {
            state.dropped += 1;
            if state.dropped.is_power_of_two() {
                eprintln!(
                    "berth-shim: log buffer full ({} bytes): {} messages dropped so far",
                    self.capacity, state.dropped
                );
            }
            return;
        }
        state.bytes += size;
        state.messages.push_back(message);
        self.changed.notify_all();
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.notify_all();
    }

    /// The log thread: hands messages to the driver until closed and empty.
    fn feed(&self, driver: &Mutex<Driver>) {
        loop {
            let message = {
                let mut state = lock(&self.state);
                loop {
                    if let Some(message) = state.messages.pop_front() {
                        state.bytes -= message.line.len();
                        break message;
                    }
                    if state.closed {
                        return;
                    }
                    state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            };
            lock(driver).write(&message);
        }
    }
}

/// `max-buffer-size` as dockerd reads it (`units.RAMInBytes`): a number,
/// an optional space, an optional k/m/g/t/p (powers of 1024), an optional
/// `i` and `b`, any case.
fn parse_buffer_size(text: &str) -> Option<usize> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let value: f64 = number.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let multiplier: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    let bytes = value * multiplier;
    (bytes.is_finite() && bytes >= 1.0 && bytes <= usize::MAX as f64).then_some(bytes as usize)
}

fn index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

pub(crate) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic".to_string()
    }
}

/// Cuts `data` into lines, continuing the unfinished line in `pending`:
/// `emit` gets every finished line with its newline, and a partial line
/// (no newline) of [`MAX_LINE`] bytes whenever one grows that long.
pub(crate) fn split_lines(pending: &mut Vec<u8>, data: &[u8], mut emit: impl FnMut(&[u8])) {
    let mut rest = data;
    while !rest.is_empty() {
        let room = MAX_LINE - pending.len();
        // A newline right after MAX_LINE bytes still ends a whole line.
        let window = &rest[..rest.len().min(room + 1)];
        match window.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let (line, after) = rest.split_at(end + 1);
                if pending.is_empty() {
                    emit(line);
                } else {
                    pending.extend_from_slice(line);
                    emit(pending);
                    pending.clear();
                }
                rest = after;
            }
            None if rest.len() >= room => {
                let (part, after) = rest.split_at(room);
                pending.extend_from_slice(part);
                emit(pending);
                pending.clear();
                rest = after;
            }
            None => {
                pending.extend_from_slice(rest);
                rest = &[];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut pending = Vec::new();
        let mut lines = Vec::new();
        for chunk in chunks {
            split_lines(&mut pending, chunk, |line| lines.push(line.to_vec()));
        }
        (lines, pending)
    }

    #[test]
    fn lines_keep_their_newline_across_reads() {
        let (lines, pending) = lines_of(&[b"one\ntw", b"o\n\nthr", b"ee"]);
        assert_eq!(lines, [&b"one\n"[..], b"two\n", b"\n"]);
        assert_eq!(pending, b"three");
    }

    #[test]
    fn long_lines_become_partial_messages() {
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let mut input = long.clone();
        input.push(b'\n');
        let (lines, pending) = lines_of(&[&input[..100], &input[100..]]);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], vec![b'x'; MAX_LINE]);
        assert_eq!(lines[1], vec![b'x'; MAX_LINE]);
        assert_eq!(lines[2], b"xxxxx\n");
        assert!(pending.is_empty());
        assert_eq!(lines.concat(), input);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_whole() {
        let mut input = vec![b'y'; MAX_LINE];
        input.push(b'\n');
        let (lines, _) = lines_of(&[&input]);
        assert_eq!(lines, [input]);
    }

    #[test]
    fn the_none_driver_opens_nothing() {
        let config = LogConfig {
            driver: "none".into(),
            opts: Default::default(),
        };
        assert!(ContainerLog::open(&config, &LogContext::default())
            .expect("none driver")
            .is_none());
    }

    #[test]
    fn buffer_sizes_are_binary() {
        assert_eq!(parse_buffer_size("4m"), Some(4 << 20));
        assert_eq!(parse_buffer_size("4MiB"), Some(4 << 20));
        assert_eq!(parse_buffer_size("1.5k"), Some(1536));
        assert_eq!(parse_buffer_size("100"), Some(100));
        assert_eq!(parse_buffer_size("2 KB"), Some(2048));
        for bad in ["", "m", "4x", "-1", "0"] {
            assert_eq!(parse_buffer_size(bad), None, "{bad:?}");
        }
    }

    /// A driver that records what it got.
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl LogWriter for Recorder {
        fn write(&mut self, message: &Message) -> berth_logs::Result<()> {
            lock(&self.0).push(message.line.clone());
            Ok(())
        }
        fn close(&mut self) -> berth_logs::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn non_blocking_mode_drops_what_does_not_fit() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let buffer = Arc::new(Buffer {
            state: Mutex::new(BufferState::default()),
            changed: Condvar::new(),
            capacity: 10,
        });
        let driver = Arc::new(Mutex::new(Driver {
            writer: Some(Box::new(Recorder(got.clone()))),
            last_error: None,
        }));
        let log = ContainerLog {
            pending: Mutex::new([Vec::new(), Vec::new()]),
            driver: driver.clone(),
            buffered: Some(Buffered {
                buffer: buffer.clone(),
                thread: Mutex::new(None),
            }),
        };
        // Nothing feeds the driver yet: only what fits in 10 bytes is kept.
        log.write(Stream::Stdout, b"12345\n67890\nabc\n", SystemTime::now());
        let thread = std::thread::spawn(move || buffer.feed(&driver));
        if let Some(buffered) = &log.buffered {
            *lock(&buffered.thread) = Some(thread);
        }
        log.close();
        assert_eq!(*lock(&got), [b"12345\n".to_vec(), b"abc\n".to_vec()]);
    }
}
