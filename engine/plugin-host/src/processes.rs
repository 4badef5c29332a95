//! The `processes` capability: the process table, read by the host with `sysinfo` and
//! shared by every instance granted `processes: true`.
//!
//! One sysinfo state serves all instances, so a process's CPU percentage is measured over
//! the interval since the previous refresh by any of them. Figures sysinfo does not give
//! are read from `/proc` on Linux (thread count); whatever the host may not read (another
//! user's file descriptors) is `none`.

use std::sync::Arc;

use parking_lot::Mutex;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

use super::bindings::processes;
use super::instance::StoreState;

/// The host's process table reader.
#[derive(Debug)]
pub(crate) struct ProcessSampler {
    system: Mutex<Option<System>>,
}

impl ProcessSampler {
    /// A sampler that reads nothing until the first [`ProcessSampler::list`].
    pub(crate) fn new() -> ProcessSampler {
        ProcessSampler {
            system: Mutex::new(None),
        }
    }

    /// Refreshes and returns every process, sorted by pid. Blocking (reads `/proc`): run
    /// it on a blocking thread.
    pub(crate) fn list(&self) -> Vec<processes::Process> {
        let mut guard = self.system.lock();
        let system = guard.get_or_insert_with(System::new);
        // Tasks off: on Linux they would list every thread as a process of its own.
        // Command line, exe and user are read once per process (they rarely change).
        system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_disk_usage()
                .with_cmd(UpdateKind::OnlyIfNotSet)
                .with_exe(UpdateKind::OnlyIfNotSet)
                .with_user(UpdateKind::OnlyIfNotSet)
                .without_tasks(),
        );
        let mut list: Vec<processes::Process> = system
            .processes()
            .values()
            .filter(|p| p.thread_kind().is_none())
            .map(|p| {
                let pid = p.pid().as_u32();
                let disk = p.disk_usage();
                processes::Process {
                    pid,
                    parent_pid: p.parent().map(|pp| pp.as_u32()),
                    name: p.name().to_string_lossy().into_owned(),
                    cmd: p
                        .cmd()
                        .iter()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect(),
                    exe: p.exe().map(|e| e.to_string_lossy().into_owned()),
                    status: p.status().to_string(),
                    cpu_percent: p.cpu_usage(),
                    cpu_time_ms: p.accumulated_cpu_time(),
                    rss_bytes: p.memory(),
                    virtual_bytes: p.virtual_memory(),
                    read_bytes: disk.total_read_bytes,
                    written_bytes: disk.total_written_bytes,
                    threads: thread_count(pid),
                    open_fds: p.open_files().and_then(|n| u32::try_from(n).ok()),
                    start_time_seconds: p.start_time(),
                    run_time_seconds: p.run_time(),
                    user_id: user_id(p),
                }
            })
            .collect();
        list.sort_by_key(|p| p.pid);
        list
    }
}

/// The `Threads:` line of `/proc/PID/status`.
#[cfg(target_os = "linux")]
fn thread_count(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(not(target_os = "linux"))]
fn thread_count(_pid: u32) -> Option<u32> {
    None
}

#[cfg(unix)]
fn user_id(p: &sysinfo::Process) -> Option<u32> {
    p.user_id().map(|uid| **uid)
}

#[cfg(not(unix))]
fn user_id(_p: &sysinfo::Process) -> Option<u32> {
    None
}

impl processes::Host for StoreState {
    async fn list(&mut self) -> Vec<processes::Process> {
        // Components without the grant are refused at load time; an empty list is the
        // safety net should that check ever be bypassed.
        let Some(sampler) = self.caps.processes.clone() else {
            tracing::error!(plugin = %self.caps.instance, "processes.list called without the grant");
            return Vec::new();
        };
        let sampler: Arc<ProcessSampler> = sampler;
        match tokio::task::spawn_blocking(move || sampler.list()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(plugin = %self.caps.instance, "reading the process table failed: {e}");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_this_test_process_with_plausible_fields() {
        let sampler = ProcessSampler::new();
        let first = sampler.list();
        assert!(first.windows(2).all(|w| w[0].pid < w[1].pid), "sorted");
        // Burn a little CPU so the second refresh has something to measure.
        let mut x = 0u64;
        let until = std::time::Instant::now() + sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let list = sampler.list();
        let me = std::process::id();
        let p = list
            .iter()
            .find(|p| p.pid == me)
            .expect("this process is listed");
        assert!(p.parent_pid.is_some());
        assert!(!p.name.is_empty());
        assert!(!p.cmd.is_empty(), "own command line is readable");
        assert!(p.exe.is_some());
        assert!(p.rss_bytes > 1 << 20, "rss {}", p.rss_bytes);
        assert!(p.virtual_bytes >= p.rss_bytes);
        assert!(p.cpu_time_ms > 0);
        assert!(p.cpu_percent > 0.0, "busy for a while: {}", p.cpu_percent);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(p.start_time_seconds <= now && p.start_time_seconds > now - 3600);
        assert!(p.run_time_seconds <= now - p.start_time_seconds + 1);
        #[cfg(target_os = "linux")]
        {
            // The test harness runs tests on threads of their own.
            assert!(p.threads.unwrap() >= 1);
            // stdin, stdout, stderr at least.
            assert!(p.open_fds.unwrap() >= 3);
            assert_eq!(p.user_id, Some(own_uid()));
            // Threads are not listed as processes.
            assert!(list.iter().filter(|q| q.pid == me).count() == 1);
        }
    }

    /// This process's real uid, read from /proc (no libc call needed).
    #[cfg(target_os = "linux")]
    fn own_uid() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    }
}
