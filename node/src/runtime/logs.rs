//! Reading a workload's output for `gpuflow logs`, in bounded chunks with a cursor, so a
//! renter can page through or follow it over the lease protocol.
//!
//! - Docker: the engine's log API with timestamps; the cursor is the nanosecond timestamp just
//!   after the last line sent (the engine's `since` is whole seconds; earlier lines of that
//!   second are skipped here), so following never repeats or skips a line.
//! - Process: the lease's `workload.log`; the cursor is the byte offset plus one.
//!
//! A cursor of 0 asks for the last `tail` lines; an answer's cursor is never 0, so a client
//! that passes it back always continues where the answer ended.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use bollard::Docker;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use gpuflow_protocol::wire::LogChunk;

use super::process::LOG_FILE;
use super::{RuntimeError, WorkloadHandle, lease_label};

/// Where a runtime's logs are read from. Cheap to clone.
#[derive(Debug, Clone)]
pub enum LogReader {
    /// Containers of this engine.
    Docker(Docker),
    /// `<dir>/<lease>/workload.log` files.
    Process(PathBuf),
}

impl LogReader {
    /// Up to `max` bytes of `handle`'s output after `cursor` (0: the last `tail` lines; `tail`
    /// 0: from the start).
    pub async fn read(
        &self,
        handle: &WorkloadHandle,
        cursor: u64,
        tail: u32,
        max: usize,
    ) -> Result<LogChunk, RuntimeError> {
        match self {
            LogReader::Docker(d) => docker_chunk(d, &handle.id, cursor, tail, max).await,
            LogReader::Process(dir) => {
                let path = dir.join(lease_label(handle.lease)).join(LOG_FILE);
                tokio::task::spawn_blocking(move || file_chunk(&path, cursor, tail, max))
                    .await
                    .map_err(|e| RuntimeError::Io {
                        what: "reading the workload log".into(),
                        source: std::io::Error::other(e.to_string()),
                    })?
            }
        }
    }
}

/// Splits a Docker log line with `timestamps` on into (nanoseconds since the epoch, text).
pub fn split_timestamp(line: &str) -> Option<(u64, &str)> {
    let (ts, text) = line.split_once(' ')?;
    Some((parse_rfc3339_nanos(ts)?, text))
}

/// `2026-12-04T21:09:25.123456789Z` → nanoseconds since the epoch (UTC only, as Docker writes).
fn parse_rfc3339_nanos(ts: &str) -> Option<u64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let digits: String = frac.chars().take(9).collect();
    let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + s;
    u64::try_from(secs.checked_mul(1_000_000_000)?.checked_add(nanos)?).ok()
}

async fn docker_chunk(
    docker: &Docker,
    id: &str,
    cursor: u64,
    tail: u32,
    max: usize,
) -> Result<LogChunk, RuntimeError> {
    let mut options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .timestamps(true);
    if cursor == 0 {
        options = options.tail(&if tail == 0 {
            "all".to_owned()
        } else {
            tail.to_string()
        });
    } else {
        // The engine takes whole seconds; lines of that second before the cursor are skipped
        // below.
        let since = i32::try_from(cursor / 1_000_000_000).unwrap_or(i32::MAX);
        options = options.since(since);
    }
    let mut stream = docker.logs(id, Some(options.build()));
    let mut text = String::new();
    // Nothing yet: continue from the beginning (0 would mean "the tail" again).
    let mut next = cursor.max(1);
    let mut more = false;
    while let Some(item) = stream.next().await {
        let item = item.map_err(|source| RuntimeError::Docker {
            what: format!("reading the logs of container {id}"),
            source,
        })?;
        let line = String::from_utf8_lossy(&item.into_bytes()).into_owned();
        let Some((ts, body)) = split_timestamp(&line) else {
            continue;
        };
        // Docker's `since` is inclusive: a line at the cursor was sent already.
        if ts < cursor {
            continue;
        }
        if !text.is_empty() && text.len() + body.len() > max {
            more = true;
            break;
        }
        text.push_str(&cut(body, max));
        next = ts.saturating_add(1);
    }
    Ok(LogChunk {
        text,
        cursor: next,
        more,
    })
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn file_chunk(
    path: &std::path::Path,
    cursor: u64,
    tail: u32,
    max: usize,
) -> Result<LogChunk, RuntimeError> {
    let io = |source| RuntimeError::Io {
        what: format!("reading {}", path.display()),
        source,
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LogChunk {
                text: String::new(),
                cursor: cursor.max(1),
                more: false,
            });
        }
        Err(e) => return Err(io(e)),
    };
    let len = f.metadata().map_err(io)?.len();
    let start = match cursor {
        0 if tail > 0 => tail_offset(&mut f, len, tail).map_err(io)?,
        0 => 0,
        // Cursors are offsets plus one.
        c => (c - 1).min(len),
    };
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    let want = usize::try_from(len - start).unwrap_or(usize::MAX).min(max);
    let mut buf = vec![0; want];
    f.read_exact(&mut buf).map_err(io)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let read = u64::try_from(want).unwrap_or(u64::MAX);
    Ok(LogChunk {
        text,
        cursor: start + read + 1,
        more: start + read < len,
    })
}

/// The offset where the last `lines` lines of the file begin.
fn tail_offset(f: &mut std::fs::File, len: u64, lines: u32) -> std::io::Result<u64> {
    // The file's last byte is usually a newline ending the last line: it starts no line.
    let mut seen = 0u32;
    let mut pos = len;
    let mut buf = [0u8; 4096];
    while pos > 0 {
        let step = pos.min(4096);
        pos -= step;
        f.seek(SeekFrom::Start(pos))?;
        let n = usize::try_from(step).unwrap_or(4096);
        f.read_exact(&mut buf[..n])?;
        for (i, b) in buf[..n].iter().enumerate().rev() {
            let at = pos + u64::try_from(i).unwrap_or(0);
            if *b == b'\n' && at + 1 < len {
                seen += 1;
                if seen == lines {
                    return Ok(at + 1);
                }
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timestamps_parse_to_nanoseconds() {
        assert_eq!(
            split_timestamp("1970-01-01T00:00:01.000000002Z hello world"),
            Some((1_000_000_002, "hello world"))
        );
        assert_eq!(
            parse_rfc3339_nanos("2026-12-04T21:09:25.5Z"),
            Some(1_796_418_565_500_000_000)
        );
        assert_eq!(split_timestamp("no timestamp"), None);
    }

    #[test]
    fn file_chunks_page_through_and_tail_counts_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workload.log");
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let last2 = file_chunk(&path, 0, 2, 100).unwrap();
        assert_eq!(last2.text, "two\nthree\n");
        assert!(!last2.more);
        let first = file_chunk(&path, 0, 0, 5).unwrap();
        assert_eq!((first.text.as_str(), first.more), ("one\nt", true));
        let rest = file_chunk(&path, first.cursor, 0, 100).unwrap();
        assert_eq!(rest.text, "wo\nthree\n");
        let none = file_chunk(&dir.path().join("missing"), 7, 0, 100).unwrap();
        assert_eq!((none.text.as_str(), none.cursor), ("", 7));
        // An empty log's answer continues from its first byte, never from "the tail" again.
        let empty = dir.path().join("empty.log");
        std::fs::write(&empty, "").unwrap();
        let first = file_chunk(&empty, 0, 5, 100).unwrap();
        assert_ne!(first.cursor, 0);
        std::fs::write(&empty, "late\n").unwrap();
        assert_eq!(
            file_chunk(&empty, first.cursor, 5, 100).unwrap().text,
            "late\n"
        );
    }
}
