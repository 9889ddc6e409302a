//! Where a command writes and reads: the process's streams, or buffers in tests.

use std::io::{self, BufRead, Write};

/// The streams of one command: results on `out`, errors, notes and questions on
/// `err`, answers read from `input`.
pub struct Io<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    input: &'a mut dyn BufRead,
}

impl<'a> Io<'a> {
    /// Streams of a command: `out` for results, `err` for errors, notes and the
    /// confirmation question, `input` for its answer.
    pub fn new(out: &'a mut dyn Write, err: &'a mut dyn Write, input: &'a mut dyn BufRead) -> Self {
        Self { out, err, input }
    }

    /// Writes one line of results.
    pub(crate) fn out_line(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.out, "{line}")
    }

    /// Writes one JSON object as a line of results.
    pub(crate) fn json_line(&mut self, value: &serde_json::Value) -> io::Result<()> {
        writeln!(self.out, "{value}")
    }

    /// Writes one line on the error stream.
    pub(crate) fn err_line(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.err, "{line}")
    }

    /// Asks `question` on the error stream and reads the answer: yes only for `y` or
    /// `yes` (any case); an empty answer, or no input at all, is no.
    pub(crate) fn confirm(&mut self, question: &str) -> io::Result<bool> {
        write!(self.err, "{question} [y/N] ")?;
        self.err.flush()?;
        let mut answer = String::new();
        self.input.read_line(&mut answer)?;
        if !answer.ends_with('\n') {
            // No line was typed (end of input): end the question's line here.
            writeln!(self.err)?;
        }
        let answer = answer.trim().to_ascii_lowercase();
        Ok(answer == "y" || answer == "yes")
    }

    /// Flushes both output streams.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.err.flush()
    }
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").finish_non_exhaustive()
    }
}
