//! The bounded, redacting log of one attempt, fed by the `log` import and by
//! the guest's stdout and stderr.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::model::{LogLevel, LogLine, LogSource, Redactor};

#[derive(Debug)]
struct Inner {
    started: Instant,
    lines: Vec<LogLine>,
    used: u64,
    budget: u64,
    truncated: bool,
    redactor: Redactor,
    stdout_partial: Vec<u8>,
    stderr_partial: Vec<u8>,
}

/// The shared log buffer of one attempt. Cloning shares the buffer.
#[derive(Debug, Clone)]
pub(crate) struct AttemptLog(Arc<Mutex<Inner>>);

impl AttemptLog {
    pub(crate) fn new(budget: u64, redactor: Redactor) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            started: Instant::now(),
            lines: Vec::new(),
            used: 0,
            budget,
            truncated: false,
            redactor,
            stdout_partial: Vec::new(),
            stderr_partial: Vec::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the buffer in a state
        // worse than missing a line, so a poisoned lock is still used.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one line, unless the budget is spent.
    pub(crate) fn push(&self, level: LogLevel, source: LogSource, message: &str) {
        self.lock().push(level, source, message);
    }

    /// A stream that turns the bytes written to it into log lines.
    pub(crate) fn stream(&self, source: LogSource) -> LogStream {
        LogStream {
            log: self.clone(),
            source,
        }
    }

    /// Flushes unterminated stdout/stderr text and returns the lines.
    pub(crate) fn finish(&self) -> Vec<LogLine> {
        let mut inner = self.lock();
        for source in [LogSource::Stdout, LogSource::Stderr] {
            let rest = std::mem::take(inner.partial(source));
            if !rest.is_empty() {
                let text = String::from_utf8_lossy(&rest).into_owned();
                inner.push(level_of(source), source, &text);
            }
        }
        std::mem::take(&mut inner.lines)
    }

    /// The text the guest wrote to stderr so far, for trap messages.
    pub(crate) fn stderr_tail(&self, max: usize) -> String {
        let inner = self.lock();
        let mut text = String::new();
        let stderr = inner
            .lines
            .iter()
            .filter(|l| l.source == LogSource::Stderr && !l.message.trim().is_empty());
        for line in stderr {
            text.push_str(&line.message);
            text.push('\n');
        }
        text.push_str(&String::from_utf8_lossy(&inner.stderr_partial));
        let text = text.trim_end();
        match text.char_indices().rev().nth(max.saturating_sub(1)) {
            Some((i, _)) if text.len() > max => format!("…{}", &text[i..]),
            _ => text.to_owned(),
        }
    }
}

fn level_of(source: LogSource) -> LogLevel {
    match source {
        LogSource::Stderr => LogLevel::Warn,
        _ => LogLevel::Info,
    }
}

impl Inner {
    fn partial(&mut self, source: LogSource) -> &mut Vec<u8> {
        match source {
            LogSource::Stderr => &mut self.stderr_partial,
            _ => &mut self.stdout_partial,
        }
    }

    fn push(&mut self, level: LogLevel, source: LogSource, message: &str) {
        if self.truncated {
            return;
        }
        let size = message.len() as u64;
        if self.used + size > self.budget {
            self.truncated = true;
            self.lines.push(LogLine {
                at_ms: self.elapsed_ms(),
                level: LogLevel::Warn,
                source: LogSource::Host,
                message: format!(
                    "log budget of {} bytes used up; further lines were dropped",
                    self.budget
                ),
            });
            return;
        }
        self.used += size;
        let message = self.redactor.redact(message);
        self.lines.push(LogLine {
            at_ms: self.elapsed_ms(),
            level,
            source,
            message,
        });
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn write(&mut self, source: LogSource, bytes: &[u8]) {
        if self.truncated {
            return;
        }
        let mut buf = std::mem::take(self.partial(source));
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&buf[start..start + pos]).into_owned();
            self.push(level_of(source), source, line.trim_end_matches('\r'));
            start += pos + 1;
        }
        buf.drain(..start);
        // An endless line without a newline must not grow without bound.
        if buf.len() as u64 > self.budget {
            let line = String::from_utf8_lossy(&buf).into_owned();
            buf.clear();
            self.push(level_of(source), source, &line);
        }
        *self.partial(source) = buf;
    }
}

/// stdout or stderr of a guest, written into its [`AttemptLog`].
///
/// Writes never fail and never block: once the budget is spent, bytes are
/// dropped, so a chatty guest cannot trap itself or stall the host.
#[derive(Debug, Clone)]
pub(crate) struct LogStream {
    log: AttemptLog,
    source: LogSource,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.log.lock().write(self.source, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.log.lock().write(self.source, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_split_into_lines_and_secrets_are_redacted() {
        let log = AttemptLog::new(1024, Redactor::new(["hunter2".to_owned()]));
        let mut s = log.stream(LogSource::Stdout);
        OutputStream::write(&mut s, Bytes::from_static(b"one\ntwo hunter2")).unwrap();
        OutputStream::write(&mut s, Bytes::from_static(b" end\n")).unwrap();
        let lines = log.finish();
        let texts: Vec<_> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(texts, ["one", "two [REDACTED] end"]);
        assert!(lines.iter().all(|l| l.source == LogSource::Stdout));
    }

    #[test]
    fn the_budget_bounds_the_log_and_says_so() {
        let log = AttemptLog::new(10, Redactor::default());
        log.push(LogLevel::Info, LogSource::Log, "12345");
        log.push(LogLevel::Info, LogSource::Log, "1234567");
        log.push(LogLevel::Info, LogSource::Log, "x");
        let lines = log.finish();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].source, LogSource::Host);
        assert!(lines[1].message.contains("budget"));
    }

    #[test]
    fn an_endless_line_does_not_grow_without_bound() {
        let log = AttemptLog::new(100, Redactor::default());
        let mut s = log.stream(LogSource::Stderr);
        for _ in 0..1000 {
            OutputStream::write(&mut s, Bytes::from_static(b"xxxxxxxxxx")).unwrap();
        }
        let inner = log.lock();
        assert!(inner.stderr_partial.len() <= 110);
        assert!(inner.truncated);
    }

    #[test]
    fn overlapping_secrets_are_fully_redacted() {
        let r = Redactor::new(["abc".to_owned(), "abcdef".to_owned(), String::new()]);
        assert_eq!(r.redact("xabcdefx abc"), "x[REDACTED]x [REDACTED]");
    }
}
