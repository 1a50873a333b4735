//! [`Fingerprint`]: a hash of a run's ordered event stream, so two runs can be compared by one
//! number; [`Trace`]: the fingerprint plus, on request (`btsim run --trace FILE`), the stream
//! itself as text, one line per record, so two runs can be compared line by line.
//!
//! FNV-1a over 64-bit words: every event the engine handles is fed as its time, its kind and the
//! handles and sizes it carries, in the order handled. Not cryptographic; it only has to change
//! when the run changes. The same scenario and seed must give the same fingerprint on every
//! machine and in every build, so nothing fed here may depend on addresses, hash-map order or
//! wall time.

/// A running FNV-1a hash of the event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    /// The hash of `text`'s bytes alone (to feed a name as one word).
    pub fn of_str(text: &str) -> u64 {
        let mut f = Fingerprint::default();
        for b in text.bytes() {
            f.0 ^= u64::from(b);
            f.0 = f.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        f.0
    }

    /// Feeds one word.
    #[inline]
    pub fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Feeds several words.
    #[inline]
    pub fn words(&mut self, ws: &[u64]) {
        for w in ws {
            self.word(*w);
        }
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }

    /// The hash as 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Names an engine's record codes (the first word of each record) for the trace file.
pub type CodeNames = fn(u64) -> Option<&'static str>;

/// A run's event stream: always hashed into a [`Fingerprint`]; written out as text when a sink
/// was given. Engines call [`Trace::at`] when an event's time is known and [`Trace::words`] for
/// each record (a code, then handles and sizes).
pub struct Trace {
    fingerprint: Fingerprint,
    sink: Option<Sink>,
}

struct Sink {
    out: std::io::BufWriter<Box<dyn std::io::Write + Send>>,
    names: CodeNames,
    now_micros: u64,
    error: Option<std::io::Error>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("fingerprint", &self.fingerprint)
            .field("writing", &self.sink.is_some())
            .finish()
    }
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new(None)
    }
}

impl Trace {
    /// A trace that writes to `out`, if given (its code names from `names`), and hashes.
    pub fn with_sink(out: Box<dyn std::io::Write + Send>, names: CodeNames) -> Self {
        Trace {
            fingerprint: Fingerprint::default(),
            sink: Some(Sink {
                out: std::io::BufWriter::with_capacity(1 << 16, out),
                names,
                now_micros: 0,
                error: None,
            }),
        }
    }

    /// A trace that only hashes when `sink` is `None`.
    pub fn new(sink: Option<(Box<dyn std::io::Write + Send>, CodeNames)>) -> Self {
        match sink {
            Some((out, names)) => Trace::with_sink(out, names),
            None => Trace {
                fingerprint: Fingerprint::default(),
                sink: None,
            },
        }
    }

    /// The next records happen at `micros` of simulated time.
    #[inline]
    pub fn at(&mut self, micros: u64) {
        self.fingerprint.word(micros);
        if let Some(s) = self.sink.as_mut() {
            s.now_micros = micros;
        }
    }

    /// One record: its code, then its words.
    #[inline]
    pub fn words(&mut self, ws: &[u64]) {
        self.fingerprint.words(ws);
        if let Some(s) = self.sink.as_mut() {
            s.write_with_host(None, ws);
        }
    }

    /// One record of peer `host`: hashed as `host`, then `ws` (a code, then its words); written
    /// as the code's name, `host=H`, then the labelled words.
    #[inline]
    pub fn host_record(&mut self, host: u64, ws: &[u64]) {
        self.fingerprint.word(host);
        self.fingerprint.words(ws);
        if let Some(s) = self.sink.as_mut() {
            s.write_with_host(Some(host), ws);
        }
    }

    /// The fingerprint so far.
    pub fn value(&self) -> u64 {
        self.fingerprint.value()
    }

    /// Flushes the sink; the first write error, if any, naming what failed.
    pub fn finish(&mut self) -> std::io::Result<()> {
        match self.sink.as_mut() {
            None => Ok(()),
            Some(s) => match s.error.take() {
                Some(e) => Err(e),
                None => std::io::Write::flush(&mut s.out),
            },
        }
    }
}

impl Sink {
    fn write_with_host(&mut self, host: Option<u64>, ws: &[u64]) {
        use std::io::Write;
        if self.error.is_some() {
            return;
        }
        let (code, rest) = match ws.split_first() {
            Some((c, rest)) => (*c, rest),
            None => return,
        };
        let t = self.now_micros;
        let mut result = write!(self.out, "{}.{:06} ", t / 1_000_000, t % 1_000_000);
        // A name is the record's kind, then a label per word: `piece_verified host piece`.
        let mut labels = (self.names)(code).map(str::split_whitespace);
        result = result.and_then(|()| match labels.as_mut().and_then(Iterator::next) {
            Some(kind) => write!(self.out, "{kind}"),
            None => write!(self.out, "code{code}"),
        });
        if let Some(h) = host {
            result = result.and_then(|()| write!(self.out, " host={h}"));
        }
        for w in rest {
            result = result.and_then(|()| match labels.as_mut().map(Iterator::next) {
                Some(Some(label)) => write!(self.out, " {label}={w}"),
                // Past a named record's labels: padding (engines pad records to a fixed width).
                Some(None) if *w == 0 => Ok(()),
                _ => write!(self.out, " {w}"),
            });
        }
        if let Err(e) = result.and_then(|()| writeln!(self.out)) {
            self.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_matters() {
        // Proves the fingerprint tells apart the same events in another order.
        let mut a = Fingerprint::default();
        a.words(&[1, 2]);
        let mut b = Fingerprint::default();
        b.words(&[2, 1]);
        assert_ne!(a, b);
        let mut c = Fingerprint::default();
        c.words(&[1, 2]);
        assert_eq!(a, c);
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_trace_writes_one_line_per_record_and_hashes_as_the_fingerprint() {
        // Proves the text trace names codes, prints time in seconds to the microsecond, and
        // that writing it does not change the fingerprint.
        let out = Shared::default();
        let names: CodeNames = |c| (c == 1).then_some("join host");
        let mut t = Trace::with_sink(Box::new(out.clone()), names);
        let mut plain = Trace::default();
        for tr in [&mut t, &mut plain] {
            tr.at(1_500_000);
            tr.words(&[1, 7, 8]);
            tr.words(&[9, 2, 3]);
        }
        t.finish().unwrap();
        assert_eq!(t.value(), plain.value());
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "1.500000 join host=7 8\n1.500000 code9 2 3\n");
    }
}
