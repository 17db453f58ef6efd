//! Where captured packets go: a pcapng stream, or text lines (tcpdump style or
//! JSON), with tcpdump's `-c` limit. Shared by live capture and `-r`.

use std::io::{self, Write};

use crate::{line, Packet, PcapngWriter};

pub struct Output {
    sink: Sink,
    written: u64,
    limit: Option<u64>,
    error: Option<io::Error>,
}

enum Sink {
    Pcapng(PcapngWriter<Box<dyn Write + Send>>),
    Text { out: Box<dyn Write + Send>, json: bool },
}

impl Output {
    /// pcapng to `out` (a file, or stdout for `-w -`).
    pub fn pcapng(out: Box<dyn Write + Send>, limit: Option<u64>) -> io::Result<Output> {
        Ok(Output::new(Sink::Pcapng(PcapngWriter::new(out)?), limit))
    }

    /// One line per packet: tcpdump style, or one JSON object.
    pub fn text(out: Box<dyn Write + Send>, json: bool, limit: Option<u64>) -> Output {
        Output::new(Sink::Text { out, json }, limit)
    }

    fn new(sink: Sink, limit: Option<u64>) -> Output {
        Output { sink, written: 0, limit, error: None }
    }

    /// Writes one packet; false once the limit is reached or writing failed
    /// (the error is kept for [`Output::finish`]).
    pub fn write(&mut self, pkt: &Packet) -> bool {
        if self.done() {
            return false;
        }
        let result = match &mut self.sink {
            Sink::Pcapng(w) => w.write(pkt),
            Sink::Text { out, json: false } => writeln!(out, "{}", line::format_line(pkt)),
            Sink::Text { out, json: true } => writeln!(out, "{}", line::to_json(pkt)),
        };
        match result {
            Ok(()) => self.written += 1,
            Err(e) => self.error = Some(e),
        }
        !self.done()
    }

    /// Declares a capture interface up front (pcapng), so an empty capture is a valid file.
    pub fn declare(&mut self, iface: &crate::CaptureIf) {
        if let Sink::Pcapng(w) = &mut self.sink {
            if let Err(e) = w.declare(iface) {
                self.error.get_or_insert(e);
            }
        }
    }

    /// The limit is reached, or the output is gone.
    pub fn done(&self) -> bool {
        self.error.is_some() || self.limit.is_some_and(|l| self.written >= l)
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn flush(&mut self) {
        let r = match &mut self.sink {
            Sink::Pcapng(w) => w.flush(),
            Sink::Text { out, .. } => out.flush(),
        };
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    /// Flushes; a write error other than a closed pipe (`| head`) is returned.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush();
        match self.error.take() {
            Some(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(()),
        }
    }
}
