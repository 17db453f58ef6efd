//! Where captured packets go: a pcapng stream, or text lines (tcpdump style or
//! JSON), with tcpdump's `-c` limit. Shared by live capture and `-r`.

use std::io::{self, Write};

use crate::{line, pcapng::EpbBatch, pcapng::InterfaceStatistics, CaptureIf, Packet, PcapngWriter};

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

    /// Whether packets go out as pcapng (and [`Output::write_epbs`] applies).
    pub fn writes_pcapng(&self) -> bool {
        matches!(self.sink, Sink::Pcapng(_))
    }

    /// Writes blocks the readers encoded for the declared interfaces, as many as the
    /// limit allows; false once the limit is reached or writing failed.
    pub fn write_epbs(&mut self, batch: &EpbBatch) -> bool {
        if self.done() {
            return false;
        }
        let room = self.limit.map_or(u64::MAX, |l| l - self.written);
        let packets = (batch.len() as u64).min(room);
        if let Sink::Pcapng(w) = &mut self.sink {
            match w.write_encoded(batch.first(packets as usize), packets) {
                Ok(()) => self.written += packets,
                Err(e) => self.error = Some(e),
            }
        }
        !self.done()
    }

    /// One Interface Statistics Block per declared interface (pcapng), at the end.
    pub fn interface_statistics(&mut self, stats: &[(CaptureIf, InterfaceStatistics)]) {
        if let Sink::Pcapng(w) = &mut self.sink {
            if self.error.is_some() {
                return;
            }
            for (iface, s) in stats {
                if let Err(e) = w.write_statistics(iface, s) {
                    self.error.get_or_insert(e);
                    return;
                }
            }
        }
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

    /// Packets written; for pcapng, those the file holds (fewer than handed over when
    /// the disk filled: it keeps whole blocks only).
    pub fn written(&self) -> u64 {
        match &self.sink {
            Sink::Pcapng(w) => w.packets_written(),
            Sink::Text { .. } => self.written,
        }
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
