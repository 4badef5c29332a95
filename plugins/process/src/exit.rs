//! How a process ended, as far as a process that is not its parent can see it: the kernel
//! keeps the wait status of a dead process in its `/proc/PID/stat` (field 52, `exit_code`,
//! Linux 3.5 and later) for as long as it is a zombie, that is until its parent reaps it.
//! Nothing here calls the host: the plugin hands in the file's text.

use std::fmt;

/// How a watched process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with status 0.
    Clean,
    /// It exited with a nonzero status.
    Error {
        /// The exit status, 1 to 255.
        code: u8,
    },
    /// A signal ended it.
    Signal {
        /// The signal's number (9 is `SIGKILL`).
        signal: u8,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
    },
    /// It vanished without being seen dead: its parent reaped it between two
    /// collections, or its status could not be read.
    Unknown,
}

impl Outcome {
    /// Every value of the `outcome` label, in the order the plugin emits them.
    pub const LABELS: [&'static str; 4] = ["clean", "error", "signal", "unknown"];

    /// Its `outcome` label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Error { .. } => "error",
            Outcome::Signal { .. } => "signal",
            Outcome::Unknown => "unknown",
        }
    }

    /// The exit status, when it exited by itself (0 for a clean exit).
    pub fn code(&self) -> Option<u8> {
        match self {
            Outcome::Clean => Some(0),
            Outcome::Error { code } => Some(*code),
            _ => None,
        }
    }

    /// The signal that ended it.
    pub fn signal(&self) -> Option<u8> {
        match self {
            Outcome::Signal { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    /// Decodes a wait status as `waitpid` returns it (and as `/proc/PID/stat` holds it):
    /// the low 7 bits are the signal that ended the process (0: none, it exited), bit 7 is
    /// the core-dump flag, bits 8 to 15 the exit status.
    pub fn from_wait_status(status: u32) -> Outcome {
        let signal = (status & 0x7f) as u8;
        match signal {
            0 => match ((status >> 8) & 0xff) as u8 {
                0 => Outcome::Clean,
                code => Outcome::Error { code },
            },
            // 0x7f marks a stopped or continued process, which a dead one never is.
            0x7f => Outcome::Unknown,
            signal => Outcome::Signal {
                signal,
                core_dumped: status & 0x80 != 0,
            },
        }
    }
}

impl fmt::Display for Outcome {
    /// The outcome as the exit log line writes it: `outcome=error exit_code=3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "outcome={}", self.label())?;
        match self {
            Outcome::Clean | Outcome::Error { .. } => {
                write!(f, " exit_code={}", self.code().unwrap_or(0))
            }
            Outcome::Signal {
                signal,
                core_dumped,
            } => {
                write!(f, " signal={signal}")?;
                if let Some(name) = signal_name(*signal) {
                    write!(f, " signal_name={name}")?;
                }
                if *core_dumped {
                    write!(f, " core_dumped=true")?;
                }
                Ok(())
            }
            Outcome::Unknown => Ok(()),
        }
    }
}

/// The name of a Linux signal that commonly ends a process (x86 and ARM numbering).
fn signal_name(signal: u8) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    })
}

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatExit {
    /// It is a zombie and the kernel gives its wait status.
    Dead(Outcome),
    /// It is a zombie, but the kernel is older than 3.5 and has no `exit_code` field.
    DeadWithoutStatus,
    /// It is not a zombie (the pid was reaped, and maybe reused, since the table was read).
    NotDead,
}

/// Reads `/proc/PID/stat`'s text: the state (field 3) and `exit_code` (field 52). The
/// name (field 2) is in parentheses and may hold spaces and `)`, so fields are counted
/// from the last `)`. `None` when the text is not a stat line.
pub fn parse_stat(text: &str) -> Option<StatExit> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let state = *fields.first()?;
    if state != "Z" {
        return Some(StatExit::NotDead);
    }
    Some(match fields.get(52 - 3) {
        Some(word) => match word.parse::<u32>() {
            Ok(status) => StatExit::Dead(Outcome::from_wait_status(status)),
            Err(_) => return None,
        },
        None => StatExit::DeadWithoutStatus,
    })
}
