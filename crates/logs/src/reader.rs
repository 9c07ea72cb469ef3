//! Reading the file drivers back for `docker logs`: every file oldest first
//! (gzip-compressed ones inflated on the fly), `--tail` by walking back from
//! the end, and `--follow` by polling the current file every 100 ms. A
//! follower survives rotation: its open descriptor reads the renamed file to
//! its end, then it takes any file rotated through meanwhile (several
//! rotations between two polls) and goes on with the new current file.
//! Files are listed and opened under the writer's rotation lock, so names
//! never shift mid-listing.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use flate2::read::GzDecoder;

use crate::rotate::{self, Rotated};
use crate::{json_file, local, Message, ReadOptions, Stream};

/// How often a follower looks for new records.
const POLL: Duration = Duration::from_millis(100);
/// Messages between two looks at `stop` while reading history.
const STOP_CHECK_EVERY: u32 = 1024;
/// How far a file's mtime may lag the clock that stamped its records.
const MTIME_SLACK: Duration = Duration::from_secs(1);
/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;

/// What a buffer holds at one of its ends.
pub(crate) enum Front {
    /// A record of this many bytes (None: framed, but not a log record).
    Record(Option<Message>, usize),
    /// More bytes are needed.
    Incomplete,
    /// Framing lost: nothing beyond this point can be trusted.
    Broken,
}

/// The on-disk encoding of a file driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    JsonFile,
    Local,
}

impl Format {
    fn decode_front(self, buf: &[u8]) -> Front {
        match self {
            Format::JsonFile => match buf.iter().position(|&b| b == b'\n') {
                Some(i) => Front::Record(json_file::decode(&buf[..i]), i + 1),
                None => Front::Incomplete,
            },
            Format::Local => local::decode_front(buf),
        }
    }

    /// The record ending where `buf` ends; `at_start`: `buf` begins at the
    /// start of the file.
    fn decode_back(self, buf: &[u8], at_start: bool) -> Front {
        match self {
            Format::JsonFile => {
                let Some((_, body)) = buf.split_last() else {
                    return Front::Incomplete;
                };
                match body.iter().rposition(|&b| b == b'\n') {
                    Some(i) => Front::Record(json_file::decode(&body[i + 1..]), buf.len() - i - 1),
                    None if at_start => Front::Record(json_file::decode(body), buf.len()),
                    None => Front::Incomplete,
                }
            }
            Format::Local => match local::decode_back(buf) {
                Front::Incomplete if at_start => Front::Broken,
                other => other,
            },
        }
    }

    /// Where the last whole record of a file of length `len` ends.
    pub(crate) fn valid_end(self, file: &File, len: u64) -> io::Result<u64> {
        match self {
            Format::JsonFile => {
                let mut end = len;
                let mut buf = vec![0u8; CHUNK];
                while end > 0 {
                    let start = end.saturating_sub(CHUNK as u64);
                    let chunk = &mut buf[..(end - start) as usize];
                    file.read_exact_at(chunk, start)?;
                    if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
                        return Ok(start + i as u64 + 1);
                    }
                    end = start;
                }
                Ok(0)
            }
            Format::Local => local::valid_end(file, len),
        }
    }
}

enum Next {
    Message(Message),
    /// No whole record available now (or the rest is unreadable).
    Idle,
}

/// Records from the front of a byte stream; a torn record at the end stays
/// pending until the rest of it arrives.
struct RecordReader<R> {
    inner: R,
    format: Format,
    buf: Vec<u8>,
    start: usize,
    /// Stream offset just past the last whole record.
    consumed: u64,
    /// Stream offset of the end of `buf`.
    read: u64,
    broken: bool,
}

impl<R: Read> RecordReader<R> {
    fn new(inner: R, format: Format, offset: u64) -> Self {
        RecordReader {
            inner,
            format,
            buf: Vec::new(),
            start: 0,
            consumed: offset,
            read: offset,
            broken: false,
        }
    }

    fn next(&mut self) -> io::Result<Next> {
        loop {
            if self.broken {
                return Ok(Next::Idle);
            }
            match self.format.decode_front(&self.buf[self.start..]) {
                Front::Record(msg, n) => {
                    self.start += n;
                    self.consumed += n as u64;
                    if let Some(msg) = msg {
                        return Ok(Next::Message(msg));
                    }
                }
                Front::Broken => self.broken = true,
                Front::Incomplete => {
                    if !self.fill()? {
                        return Ok(Next::Idle);
                    }
                }
            }
        }
    }

    /// Reads more; false at the end of what is there now.
    fn fill(&mut self) -> io::Result<bool> {
        self.buf.drain(..self.start);
        self.start = 0;
        let old = self.buf.len();
        self.buf.resize(old + CHUNK, 0);
        let n = loop {
            match self.inner.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        self.read += n as u64;
        Ok(n > 0)
    }
}

impl RecordReader<File> {
    /// Starts over at `offset` (the file was cut shorter under us).
    fn rewind(&mut self, offset: u64) -> io::Result<()> {
        self.inner.seek(SeekFrom::Start(offset))?;
        self.buf.clear();
        self.start = 0;
        self.consumed = offset;
        self.read = offset;
        self.broken = false;
        Ok(())
    }
}

/// Applies the filters and hands messages to the sink.
struct Emitter<'a> {
    options: &'a ReadOptions,
    stop: &'a AtomicBool,
    sink: &'a mut dyn FnMut(Message) -> bool,
    until_stop_check: u32,
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Done,
}

impl Emitter<'_> {
    fn wanted(&self, stream: Stream) -> bool {
        match stream {
            Stream::Stdout => self.options.stdout,
            Stream::Stderr => self.options.stderr,
        }
    }

    fn emit(&mut self, msg: Message) -> Flow {
        // Reading a long history still notices `stop`.
        self.until_stop_check = self.until_stop_check.saturating_sub(1);
        if self.until_stop_check == 0 {
            self.until_stop_check = STOP_CHECK_EVERY;
            if self.stop.load(Ordering::Relaxed) {
                return Flow::Done;
            }
        }
        if self.options.until.is_some_and(|until| msg.time > until) {
            return Flow::Done;
        }
        if !self.wanted(msg.stream) || self.options.since.is_some_and(|since| msg.time < since) {
            return Flow::Continue;
        }
        if (self.sink)(msg) {
            Flow::Continue
        } else {
            Flow::Done
        }
    }

    /// Every record `reader` has now; also reports the last record's time.
    fn drain<R: Read>(
        &mut self,
        reader: &mut RecordReader<R>,
        last_time: &mut Option<SystemTime>,
    ) -> io::Result<Flow> {
        while let Next::Message(msg) = reader.next()? {
            *last_time = Some(msg.time);
            if self.emit(msg) == Flow::Done {
                return Ok(Flow::Done);
            }
        }
        Ok(Flow::Continue)
    }
}

fn io_error(path: &Path, source: io::Error) -> crate::Error {
    crate::Error::Io {
        context: format!("reading {}", path.display()),
        source,
    }
}

/// A rotated file opened for reading.
enum Opened {
    Plain(File),
    Gz(GzDecoder<File>),
}

/// Opens a rotated file; None when it vanished (rotated away meanwhile) or,
/// with `since`, when it holds nothing that recent.
fn open_rotated(r: &Rotated, since: Option<SystemTime>) -> io::Result<Option<Opened>> {
    let (file, gz) = match File::open(&r.path) {
        Ok(f) => (f, r.gz),
        // Compressed since it was listed.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !r.gz => {
            match File::open(rotate::with_suffix(&r.path, ".gz")) {
                Ok(f) => (f, true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Some(since) = since {
        // Every record was written before the file's last change (give or
        // take the coarse clock file times come from).
        let modified = file.metadata()?.modified();
        if modified.is_ok_and(|m| m + MTIME_SLACK < since) {
            return Ok(None);
        }
    }
    if !gz {
        return Ok(Some(Opened::Plain(file)));
    }
    let gz = GzDecoder::new(file);
    let last = rotate::gz_last_time(gz.header().and_then(|h| h.extra()));
    if let (Some(since), Some(last)) = (since, last) {
        if last < since {
            return Ok(None);
        }
    }
    Ok(Some(Opened::Gz(gz)))
}

/// The last `want` wanted messages of a plain file whose whole records end
/// at `end`, newest first, appended to `out`.
fn tail_plain(
    file: &File,
    end: u64,
    format: Format,
    want: usize,
    wanted: &dyn Fn(&Message) -> bool,
    out: &mut Vec<Message>,
) -> io::Result<()> {
    let target = out.len().saturating_add(want);
    let mut window: Vec<u8> = Vec::new();
    let mut window_start = end;
    let mut chunk = CHUNK as u64;
    while out.len() < target && !(window.is_empty() && window_start == 0) {
        match format.decode_back(&window, window_start == 0) {
            Front::Record(msg, n) => {
                window.truncate(window.len() - n);
                if let Some(msg) = msg.filter(|m| wanted(m)) {
                    out.push(msg);
                }
            }
            Front::Incomplete if window_start > 0 => {
                let add = chunk.min(window_start);
                let mut grown = vec![0u8; add as usize];
                file.read_exact_at(&mut grown, window_start - add)?;
                grown.extend_from_slice(&window);
                window = grown;
                window_start -= add;
                chunk = (chunk * 2).min(8 << 20);
            }
            Front::Incomplete | Front::Broken => break,
        }
    }
    Ok(())
}

/// The time of the last whole record of a plain file `len` long.
fn last_record_time(file: &File, len: u64, format: Format) -> io::Result<Option<SystemTime>> {
    let end = format.valid_end(file, len)?;
    let mut last = Vec::with_capacity(1);
    tail_plain(file, end, format, 1, &|_| true, &mut last)?;
    Ok(last.first().map(|m| m.time))
}

/// The last `want` wanted messages of a stream read front to back, newest
/// first, appended to `out`.
fn tail_stream<R: Read>(
    inner: R,
    format: Format,
    want: usize,
    wanted: &dyn Fn(&Message) -> bool,
    out: &mut Vec<Message>,
) -> io::Result<()> {
    let mut reader = RecordReader::new(inner, format, 0);
    let mut last = VecDeque::with_capacity(want.min(4096));
    while let Next::Message(msg) = reader.next()? {
        if wanted(&msg) {
            if last.len() == want {
                last.pop_front();
            }
            last.push_back(msg);
        }
    }
    out.extend(last.into_iter().rev());
    Ok(())
}

fn tail_rotated(
    opened: Opened,
    format: Format,
    want: usize,
    wanted: &dyn Fn(&Message) -> bool,
    out: &mut Vec<Message>,
) -> io::Result<()> {
    match opened {
        Opened::Plain(f) => {
            let end = format.valid_end(&f, f.metadata()?.len())?;
            tail_plain(&f, end, format, want, wanted, out)
        }
        Opened::Gz(gz) => tail_stream(gz, format, want, wanted, out),
    }
}

/// How reading the history ended.
enum History {
    /// The sink or `until` ended the read.
    Done,
    /// Follow on from here (the current file, past what was read).
    Continue(Option<RecordReader<File>>),
}

/// Every file, oldest first.
fn read_all(
    base: &Path,
    format: Format,
    current: Option<File>,
    rotated: Vec<(&Rotated, Opened)>,
    emitter: &mut Emitter<'_>,
    last_time: &mut Option<SystemTime>,
) -> crate::Result<History> {
    for (r, opened) in rotated {
        let flow = match opened {
            Opened::Plain(f) => emitter.drain(&mut RecordReader::new(f, format, 0), last_time),
            Opened::Gz(gz) => emitter.drain(&mut RecordReader::new(gz, format, 0), last_time),
        };
        if flow.map_err(|e| io_error(&r.path, e))? == Flow::Done {
            return Ok(History::Done);
        }
    }
    let Some(current) = current else {
        return Ok(History::Continue(None));
    };
    let mut reader = RecordReader::new(current, format, 0);
    match emitter
        .drain(&mut reader, last_time)
        .map_err(|e| io_error(base, e))?
    {
        Flow::Done => Ok(History::Done),
        Flow::Continue => Ok(History::Continue(Some(reader))),
    }
}

/// The last `want` messages of the selected streams, walking back from the
/// end of the current file (`current_len` long when opened).
fn read_tail(
    base: &Path,
    format: Format,
    current: Option<File>,
    current_len: u64,
    rotated: Vec<(&Rotated, Opened)>,
    want: usize,
    emitter: &mut Emitter<'_>,
) -> crate::Result<History> {
    let end = match &current {
        Some(f) => format
            .valid_end(f, current_len)
            .map_err(|e| io_error(base, e))?,
        None => 0,
    };
    let wanted = |m: &Message| emitter.wanted(m.stream);
    let mut newest_first = Vec::new();
    if let Some(f) = &current {
        tail_plain(f, end, format, want, &wanted, &mut newest_first)
            .map_err(|e| io_error(base, e))?;
    }
    for (r, opened) in rotated.into_iter().rev() {
        let left = want.saturating_sub(newest_first.len());
        if left == 0 {
            break;
        }
        tail_rotated(opened, format, left, &wanted, &mut newest_first)
            .map_err(|e| io_error(&r.path, e))?;
    }
    for msg in newest_first.into_iter().rev() {
        if emitter.emit(msg) == Flow::Done {
            return Ok(History::Done);
        }
    }
    let Some(mut current) = current else {
        return Ok(History::Continue(None));
    };
    current
        .seek(SeekFrom::Start(end))
        .map_err(|e| io_error(base, e))?;
    Ok(History::Continue(Some(RecordReader::new(
        current, format, end,
    ))))
}

/// `docker logs` over a file driver's files (`base` is the current file).
pub(crate) fn read(
    base: &Path,
    format: Format,
    options: &ReadOptions,
    stop: &AtomicBool,
    sink: &mut dyn FnMut(Message) -> bool,
) -> crate::Result<()> {
    let mut emitter = Emitter {
        options,
        stop,
        sink,
        until_stop_check: STOP_CHECK_EVERY,
    };
    // Names are stable while we hold this: open everything, then read.
    let lock = rotate::lock(base, false);
    let current = match File::open(base) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(base, e)),
    };
    let (current_ino, current_len) = match &current {
        Some(f) => {
            let meta = f.metadata().map_err(|e| io_error(base, e))?;
            (Some(meta.ino()), meta.len())
        }
        None => (None, 0),
    };
    let rotated: Vec<Rotated> = match options.tail {
        Some(0) => Vec::new(),
        _ => rotate::list_rotated(base).map_err(|e| io_error(base, e))?,
    };
    let mut opened = Vec::new();
    for r in &rotated {
        match open_rotated(r, options.since).map_err(|e| io_error(&r.path, e))? {
            // The current file, rotated since we opened it.
            Some(Opened::Plain(f)) if f.metadata().ok().map(|m| m.ino()) == current_ino => {}
            Some(o) => opened.push((r, o)),
            None => {}
        }
    }
    drop(lock);

    let mut last_time = None;
    let history = match options.tail {
        Some(want) => {
            if let Some(f) = &current {
                last_time =
                    last_record_time(f, current_len, format).map_err(|e| io_error(base, e))?;
            }
            read_tail(
                base,
                format,
                current,
                current_len,
                opened,
                want,
                &mut emitter,
            )?
        }
        None => read_all(base, format, current, opened, &mut emitter, &mut last_time)?,
    };
    let History::Continue(follow_from) = history else {
        return Ok(());
    };
    if !options.follow {
        return Ok(());
    }
    Follower {
        base,
        format,
        emitter,
        reader: follow_from,
        ino: current_ino,
        last_time,
    }
    .run()
}

struct Follower<'a> {
    base: &'a Path,
    format: Format,
    emitter: Emitter<'a>,
    reader: Option<RecordReader<File>>,
    /// Inode of the file `reader` reads.
    ino: Option<u64>,
    /// Time of the last record read (wanted or not).
    last_time: Option<SystemTime>,
}

impl Follower<'_> {
    fn run(mut self) -> crate::Result<()> {
        let base = self.base;
        loop {
            if self.emitter.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if self
                .emitter
                .options
                .until
                .is_some_and(|until| SystemTime::now() > until)
            {
                return Ok(());
            }
            if let Some(reader) = &mut self.reader {
                if self
                    .emitter
                    .drain(reader, &mut self.last_time)
                    .map_err(|e| io_error(base, e))?
                    == Flow::Done
                {
                    return Ok(());
                }
            }
            match fs::metadata(base) {
                Ok(meta) if Some(meta.ino()) != self.ino => {
                    if self.switch_file().map_err(|e| io_error(base, e))? == Flow::Done {
                        return Ok(());
                    }
                    continue;
                }
                Ok(meta) => {
                    if let Some(reader) = &mut self.reader {
                        if meta.len() < reader.read {
                            // Cut shorter (a writer dropping a torn record).
                            let offset = reader.consumed.min(meta.len());
                            reader.rewind(offset).map_err(|e| io_error(base, e))?;
                            continue;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(base, e)),
            }
            std::thread::sleep(POLL);
        }
    }

    /// The current file is a new one: finish the old one, read any file
    /// rotated through while we slept, then go on with the new one.
    fn switch_file(&mut self) -> io::Result<Flow> {
        // Finish the old file first: nothing more is written to it.
        let old = self.reader.take();
        if let Some(mut old) = old {
            if self.emitter.drain(&mut old, &mut self.last_time)? == Flow::Done {
                return Ok(Flow::Done);
            }
        }
        let lock = rotate::lock(self.base, false);
        let (next, next_ino) = match File::open(self.base) {
            Ok(f) => {
                let ino = f.metadata()?.ino();
                (f, ino)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Gone (the container's logs removed); look again later.
                self.ino = None;
                return Ok(Flow::Continue);
            }
            Err(e) => return Err(e),
        };
        let missed = match self.ino {
            Some(old) => self.missed_files(old, next_ino)?,
            None => Vec::new(),
        };
        drop(lock);
        for opened in missed {
            let flow = match opened {
                Opened::Plain(f) => self.emitter.drain(
                    &mut RecordReader::new(f, self.format, 0),
                    &mut self.last_time,
                )?,
                Opened::Gz(gz) => self.emitter.drain(
                    &mut RecordReader::new(gz, self.format, 0),
                    &mut self.last_time,
                )?,
            };
            if flow == Flow::Done {
                return Ok(Flow::Done);
            }
        }
        self.ino = Some(next_ino);
        self.reader = Some(RecordReader::new(next, self.format, 0));
        Ok(Flow::Continue)
    }

    /// Files rotated between the one we read (inode `old`) and the new
    /// current one (`next`): more than one rotation happened between two
    /// polls. Told apart by content, not by name (compression renames
    /// files without the lock): a file was missed when its last record is
    /// newer than the last one we read. Oldest first; called under the
    /// rotation lock.
    fn missed_files(&self, old: u64, next: u64) -> io::Result<Vec<Opened>> {
        // The usual case, one rotation: our file is now `.1`.
        let first = fs::metadata(rotate::rotated_path(self.base, 1, false));
        if first.is_ok_and(|m| m.ino() == old) {
            return Ok(Vec::new());
        }
        let Some(seen) = self.last_time else {
            return Ok(Vec::new());
        };
        let mut missed: Vec<(SystemTime, Opened)> = Vec::new();
        for r in rotate::list_all_rotated(self.base)? {
            let Some(opened) = open_rotated(&r, None)? else {
                continue;
            };
            let last = match &opened {
                Opened::Plain(f) => {
                    let meta = f.metadata()?;
                    if meta.ino() == old || meta.ino() == next {
                        continue;
                    }
                    last_record_time(f, meta.len(), self.format)?
                }
                Opened::Gz(gz) => rotate::gz_last_time(gz.header().and_then(|h| h.extra())),
            };
            match last {
                Some(last) if last > seen => missed.push((last, opened)),
                _ => {}
            }
        }
        missed.sort_by_key(|(last, _)| *last);
        // A file caught both before and after its compression.
        missed.dedup_by_key(|(last, _)| *last);
        Ok(missed.into_iter().map(|(_, opened)| opened).collect())
    }
}
