//! Reading a secret from the terminal without echoing it.
//!
//! The prompt and the answer go through `/dev/tty`, not stdin/stdout, so a secret is never
//! read from a pipe by accident and stdout keeps carrying only the command's result. Echo is
//! turned off for the answer and restored afterwards, also when reading fails.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};

use anyhow::{Context, bail};
use gpuflow_node::wallet::Password;
use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

/// The controlling terminal, if the process has one.
pub(crate) fn tty() -> Option<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()
}

/// Asks for a password on the terminal `tty`, without echo. With `confirm`, asks twice and
/// refuses a mismatch. Refuses an empty answer.
pub(crate) fn secret(tty: &File, question: &str, confirm: bool) -> anyhow::Result<Password> {
    let text = secret_text(tty, question, confirm)?;
    Ok(Password::new(text.as_str()))
}

/// Like [`secret`], as text that is zeroed on drop.
pub(crate) fn secret_text(
    tty: &File,
    question: &str,
    confirm: bool,
) -> anyhow::Result<Zeroizing<String>> {
    let first = read_hidden(tty, question)?;
    if first.is_empty() {
        bail!("an empty answer was given; nothing was written");
    }
    if confirm {
        let again = read_hidden(tty, "Repeat it: ")?;
        if *again != *first {
            bail!("the two answers differ; nothing was written, run the command again");
        }
    }
    Ok(first)
}

fn read_hidden(tty: &File, question: &str) -> anyhow::Result<Zeroizing<String>> {
    let mut out = tty;
    out.write_all(question.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the prompt to the terminal")?;
    let saved = tcgetattr(tty).context("reading the terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(tty, SetArg::TCSANOW, &quiet).context("turning terminal echo off")?;
    let mut line = Zeroizing::new(String::new());
    let read = BufReader::new(tty).read_line(&mut line);
    // Restored before anything else can fail, so the terminal is never left without echo.
    let restored = tcsetattr(tty, SetArg::TCSANOW, &saved);
    read.context("reading from the terminal")?;
    restored.context("restoring terminal echo")?;
    let trimmed = line.trim_end_matches(['\n', '\r']);
    Ok(Zeroizing::new(trimmed.to_owned()))
}
