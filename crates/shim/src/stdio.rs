//! The stdio of one process (the container's init or an exec): pumps that
//! read its output and hand every read to the log and, framed, to every
//! attached client; the stdin clients write to; its pty.
//!
//! Each attached client has its own queue and writer thread. A client whose
//! queue stays over [`CLIENT_BUDGET`] for [`SLOW_CLIENT_GRACE`] is dropped,
//! so a slow client holds up the container and its log for at most that long.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use berth_logs::Stream;

use crate::container_log::ContainerLog;
use crate::protocol::frame;

/// Bytes of frames a client may have waiting before the pump waits for it.
pub(crate) const CLIENT_BUDGET: usize = 1 << 20;

/// How long a pump waits for a client over budget before dropping it.
pub(crate) const SLOW_CLIENT_GRACE: Duration = Duration::from_secs(2);

/// One read of the container's output.
const READ_SIZE: usize = 32 * 1024;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Hub {
    tty: bool,
    stdin_once: bool,
    output: Mutex<Output>,
    output_changed: Condvar,
    stdin: Mutex<StdinSink>,
    stdin_changed: Condvar,
    terminal: Mutex<Terminal>,
}

struct Output {
    subscribers: Vec<Arc<Subscriber>>,
    /// Pumps still reading.
    pumps: usize,
    /// The process's output is over; attaching gets an empty stream.
    finished: bool,
}

enum StdinSink {
    /// The process is not started yet: writers wait.
    Pending,
    Open(Arc<File>),
    Closed,
}

#[derive(Default)]
struct Terminal {
    master: Option<Arc<File>>,
    /// A resize that came before the pty (an exec not started yet).
    size: Option<(u16, u16)>,
}

impl Hub {
    pub(crate) fn new(tty: bool, stdin_once: bool) -> Arc<Hub> {
        Arc::new(Hub {
            tty,
            stdin_once,
            output: Mutex::new(Output {
                subscribers: Vec::new(),
                pumps: 0,
                finished: false,
            }),
            output_changed: Condvar::new(),
            stdin: Mutex::new(StdinSink::Pending),
            stdin_changed: Condvar::new(),
            terminal: Mutex::new(Terminal::default()),
        })
    }

    /// Where clients' stdin goes from now on (`None`: nowhere, the process has none).
    pub(crate) fn set_stdin(&self, sink: Option<Arc<File>>) {
        *lock(&self.stdin) = match sink {
            Some(file) => StdinSink::Open(file),
            None => StdinSink::Closed,
        };
        self.stdin_changed.notify_all();
    }

    /// EOF for the process's stdin (once the last writer finished its write).
    pub(crate) fn close_stdin(&self) {
        self.set_stdin(None);
    }

    /// The pty master; a size asked for before is applied now.
    pub(crate) fn set_master(&self, master: Arc<File>) -> io::Result<()> {
        let mut terminal = lock(&self.terminal);
        if let Some((width, height)) = terminal.size.take() {
            set_size(&master, width, height)?;
        }
        terminal.master = Some(master);
        Ok(())
    }

    /// A size asked for while there is no pty yet.
    pub(crate) fn pending_size(&self) -> Option<(u16, u16)> {
        lock(&self.terminal).size
    }

    /// Sets the pty size; without a pty (no tty) nothing happens, as with
    /// containerd; before the pty exists the size is kept for it.
    pub(crate) fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        let mut terminal = lock(&self.terminal);
        match &terminal.master {
            Some(master) => set_size(master, width, height),
            None if self.tty => {
                terminal.size = Some((width, height));
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Starts a thread that copies `source` to the clients (and the log)
    /// until EOF (or EIO: a pty whose other side is closed).
    pub(crate) fn pump(
        self: &Arc<Self>,
        stream: Stream,
        source: Arc<File>,
        log: Option<Arc<ContainerLog>>,
    ) -> io::Result<()> {
        lock(&self.output).pumps += 1;
        let hub = self.clone();
        let started = std::thread::Builder::new()
            .name("pump".into())
            .stack_size(crate::server::THREAD_STACK)
            .spawn(move || {
                hub.copy_output(stream, &source, log.as_deref());
                if let Some(log) = log {
                    log.end(stream);
                }
                lock(&hub.output).pumps -= 1;
                hub.output_changed.notify_all();
            });
        if let Err(e) = started {
            lock(&self.output).pumps -= 1;
            return Err(e);
        }
        Ok(())
    }

    fn copy_output(&self, stream: Stream, source: &File, log: Option<&ContainerLog>) {
        let mut buf = vec![0u8; READ_SIZE];
        let mut reader = source;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EIO: the pty's last slave fd closed.
                Err(_) => return,
            };
            let data = &buf[..n];
            if let Some(log) = log {
                log.write(stream, data, SystemTime::now());
            }
            self.broadcast(stream, data);
        }
    }

    fn broadcast(&self, stream: Stream, data: &[u8]) {
        let subscribers: Vec<Arc<Subscriber>> = lock(&self.output)
            .subscribers
            .iter()
            .filter(|s| s.wants(stream))
            .cloned()
            .collect();
        if subscribers.is_empty() {
            return;
        }
        let framed: Arc<[u8]> = frame(stream, data).into();
        for subscriber in subscribers {
            subscriber.push(&framed);
        }
    }

    /// Waits until every pump reached EOF; false after `timeout`.
    pub(crate) fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut output = lock(&self.output);
        while output.pumps > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            output = self
                .output_changed
                .wait_timeout(output, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// The output is over: every client gets what is queued and then the
    /// end of its stream; stdin is closed; the pty is let go.
    pub(crate) fn finish(&self) {
        let subscribers = {
            let mut output = lock(&self.output);
            output.finished = true;
            std::mem::take(&mut output.subscribers)
        };
        for subscriber in subscribers {
            subscriber.close();
        }
        self.close_stdin();
        lock(&self.terminal).master = None;
    }

    /// Serves one attached client on `stream`: once subscribed (so no output
    /// after this point is missed) `ready` writes the answer; then frames of
    /// the streams asked for go out, and the client's bytes (`input`, which
    /// may hold some already) go to the process's stdin. Returns when both
    /// directions ended.
    pub(crate) fn attach(
        self: &Arc<Self>,
        options: &crate::AttachOptions,
        mut input: impl Read,
        stream: UnixStream,
        ready: impl FnOnce(&mut UnixStream) -> io::Result<()>,
    ) -> io::Result<()> {
        let subscriber = Arc::new(Subscriber {
            stdout: options.stdout,
            stderr: options.stderr && !self.tty,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            socket: stream.try_clone()?,
        });
        {
            let mut output = lock(&self.output);
            if output.finished {
                subscriber.close();
            } else {
                output.subscribers.push(subscriber.clone());
            }
        }
        let mut stream = stream;
        if let Err(e) = ready(&mut stream) {
            self.unsubscribe(&subscriber);
            return Err(e);
        }
        if !options.stdin {
            subscriber.run_writer(stream);
            self.unsubscribe(&subscriber);
            return Ok(());
        }
        let writer_subscriber = subscriber.clone();
        let writer = std::thread::Builder::new()
            .name("attach".into())
            .stack_size(crate::server::THREAD_STACK)
            .spawn(move || writer_subscriber.run_writer(stream));
        let writer = match writer {
            Ok(writer) => writer,
            Err(e) => {
                subscriber.drop_slow();
                self.unsubscribe(&subscriber);
                return Err(e);
            }
        };
        self.forward_stdin(&mut input);
        let _ = writer.join();
        self.unsubscribe(&subscriber);
        Ok(())
    }

    fn unsubscribe(&self, subscriber: &Arc<Subscriber>) {
        lock(&self.output)
            .subscribers
            .retain(|s| !Arc::ptr_eq(s, subscriber));
    }

    /// Copies a client's bytes to the process's stdin until the client ends
    /// its input; then, with `stdin_once` and no tty, the stdin is closed.
    fn forward_stdin(&self, input: &mut impl Read) {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if let Some(sink) = self.stdin_sink() {
                // A process that closed its stdin just does not get the bytes.
                let _ = (&*sink).write_all(&buf[..n]);
            }
        }
        if self.stdin_once && !self.tty {
            self.close_stdin();
        }
    }

    /// The stdin to write to, waiting while the process is not started.
    fn stdin_sink(&self) -> Option<Arc<File>> {
        let mut sink = lock(&self.stdin);
        loop {
            match &*sink {
                StdinSink::Open(file) => return Some(file.clone()),
                StdinSink::Closed => return None,
                StdinSink::Pending => {
                    sink = self
                        .stdin_changed
                        .wait(sink)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}

fn set_size(master: &File, width: u16, height: u16) -> io::Result<()> {
    berth_sys::tty::set_window_size(master, height, width).map_err(io::Error::from)
}

/// One attached client's output side.
struct Subscriber {
    stdout: bool,
    stderr: bool,
    queue: Mutex<Queue>,
    changed: Condvar,
    /// For cutting the connection of a client that fell behind.
    socket: UnixStream,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Arc<[u8]>>,
    bytes: usize,
    closed: bool,
}

impl Subscriber {
    fn wants(&self, stream: Stream) -> bool {
        match stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        }
    }

    /// Queues a frame; over budget, waits up to [`SLOW_CLIENT_GRACE`] for the
    /// writer to catch up, then drops the client.
    fn push(&self, frame: &Arc<[u8]>) {
        let deadline = Instant::now() + SLOW_CLIENT_GRACE;
        let mut queue = lock(&self.queue);
        loop {
            if queue.closed {
                return;
            }
            if queue.frames.is_empty() || queue.bytes + frame.len() <= CLIENT_BUDGET {
                queue.bytes += frame.len();
                queue.frames.push_back(frame.clone());
                self.changed.notify_all();
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(queue);
                self.drop_slow();
                return;
            }
            queue = self
                .changed
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// No more frames will come; the writer sends what is queued, then ends.
    fn close(&self) {
        lock(&self.queue).closed = true;
        self.changed.notify_all();
    }

    /// Cuts a client that fell behind: its queue is dropped with the connection.
    fn drop_slow(&self) {
        {
            let mut queue = lock(&self.queue);
            queue.closed = true;
            queue.frames.clear();
            queue.bytes = 0;
        }
        self.changed.notify_all();
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Writes queued frames to the client until the queue is closed and
    /// empty or the client is gone, then ends the connection both ways.
    fn run_writer(&self, mut socket: UnixStream) {
        loop {
            let frame = {
                let mut queue = lock(&self.queue);
                loop {
                    if let Some(frame) = queue.frames.pop_front() {
                        queue.bytes -= frame.len();
                        self.changed.notify_all();
                        break Some(frame);
                    }
                    if queue.closed {
                        break None;
                    }
                    queue = self.changed.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
            };
            let Some(frame) = frame else { break };
            if socket.write_all(&frame).is_err() {
                self.drop_slow();
                break;
            }
        }
        let _ = socket.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::read_frame;
    use crate::AttachOptions;

    fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    fn pipe() -> (File, File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        (File::from(r), File::from(w))
    }

    #[test]
    fn output_reaches_clients_framed_and_then_ends() {
        let hub = Hub::new(false, false);
        let (out_r, mut out_w) = pipe();
        let (err_r, mut err_w) = pipe();
        let (client, server) = UnixStream::pair().expect("socketpair");
        let attach_hub = hub.clone();
        let options = AttachOptions {
            exec: None,
            stdin: false,
            stdout: true,
            stderr: true,
        };
        let attached = std::thread::spawn(move || {
            attach_hub
                .attach(&options, io::empty(), server, |_| Ok(()))
                .expect("attach")
        });
        // Subscribed before any output is produced.
        assert!(wait_for(Duration::from_secs(5), || {
            !lock(&hub.output).subscribers.is_empty()
        }));
        hub.pump(Stream::Stdout, Arc::new(out_r), None)
            .expect("pump");
        hub.pump(Stream::Stderr, Arc::new(err_r), None)
            .expect("pump");
        out_w.write_all(b"out\n").expect("write");
        drop(out_w);
        err_w.write_all(b"err\n").expect("write");
        drop(err_w);
        assert!(hub.drain(Duration::from_secs(5)));
        hub.finish();
        attached.join().expect("attach thread");
        let mut reader = client;
        let mut got = Vec::new();
        while let Some(frame) = read_frame(&mut reader).expect("frame") {
            got.push(frame);
        }
        got.sort_by_key(|(stream, _)| *stream == Stream::Stderr);
        assert_eq!(
            got,
            [
                (Stream::Stdout, b"out\n".to_vec()),
                (Stream::Stderr, b"err\n".to_vec())
            ]
        );
    }

    #[test]
    fn stdin_once_closes_the_process_stdin() {
        let hub = Hub::new(false, true);
        let (in_r, in_w) = pipe();
        hub.set_stdin(Some(Arc::new(in_w)));
        let (mut client, server) = UnixStream::pair().expect("socketpair");
        let input = server.try_clone().expect("clone");
        let attach_hub = hub.clone();
        let options = AttachOptions {
            exec: None,
            stdin: true,
            stdout: false,
            stderr: false,
        };
        let attached = std::thread::spawn(move || {
            attach_hub
                .attach(&options, input, server, |_| Ok(()))
                .expect("attach")
        });
        client.write_all(b"hello").expect("write");
        client.shutdown(Shutdown::Write).expect("shutdown");
        let mut got = Vec::new();
        (&in_r).read_to_end(&mut got).expect("read to EOF");
        assert_eq!(got, b"hello");
        hub.finish();
        attached.join().expect("attach thread");
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped() {
        let hub = Hub::new(false, false);
        let (client, server) = UnixStream::pair().expect("socketpair");
        let attach_hub = hub.clone();
        let options = AttachOptions {
            exec: None,
            stdin: false,
            stdout: true,
            stderr: false,
        };
        let attached = std::thread::spawn(move || {
            attach_hub
                .attach(&options, io::empty(), server, |_| Ok(()))
                .expect("attach")
        });
        assert!(wait_for(Duration::from_secs(5), || {
            !lock(&hub.output).subscribers.is_empty()
        }));
        let chunk = vec![b'x'; READ_SIZE];
        let started = Instant::now();
        // Far more than the socket buffer and the budget together.
        for _ in 0..((CLIENT_BUDGET * 8) / READ_SIZE) {
            hub.broadcast(Stream::Stdout, &chunk);
        }
        assert!(started.elapsed() < SLOW_CLIENT_GRACE * 3);
        attached.join().expect("attach thread");
        assert!(lock(&hub.output).subscribers.is_empty());
        drop(client);
    }

    #[test]
    fn attaching_after_the_end_gets_an_empty_stream() {
        let hub = Hub::new(false, false);
        hub.finish();
        assert!(lock(&hub.output).finished);
        let (mut client, server) = UnixStream::pair().expect("socketpair");
        hub.attach(&AttachOptions::default(), io::empty(), server, |_| Ok(()))
            .expect("attach");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("read");
        assert!(rest.is_empty());
    }
}
