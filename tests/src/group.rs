//! A child process that leads a process group of its own, and never outlives the test.
//!
//! Killing a WebDriver server leaves behind the browser it launched (and the browser's own
//! children): killing one process is not enough. So a [`Group`]'s leader starts a new
//! process group, which everything it launches inherits, and the whole group is killed:
//! - when the `Group` is dropped (the end of a test, or a panic unwinding through it);
//! - when the test process dies in a way that runs no `Drop` (killed, aborted): a tiny
//!   guard shell reads a pipe whose only writer is the test process; end of file means the
//!   test is gone, and the guard kills the group.
//!
//! Invariant: once a `Group` is dropped, or its test process is gone, no process of its
//! group is alive (a process that moves to a new session of its own escapes any group:
//! the browsers are started with flags that keep every process in it).

use std::{
    io::Write,
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use std::os::unix::process::CommandExt;

/// A process group led by a child of the test, killed whole when dropped.
pub struct Group {
    leader: Child,
    guard: Option<(Child, ChildStdin)>,
}

impl Group {
    /// Starts `command` as the leader of a new process group, with its streams as the
    /// caller set them.
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        let leader = command.process_group(0).spawn()?;
        let mut guard = Command::new("sh")
            .args([
                "-c",
                r#"read _ || kill -KILL "-$1" 2>/dev/null"#,
                "group-guard",
            ])
            .arg(leader.id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pipe = guard.stdin.take().expect("the guard's input is piped");
        Ok(Self {
            leader,
            guard: Some((guard, pipe)),
        })
    }

    /// The process group's id (its leader's process id).
    pub fn id(&self) -> u32 {
        self.leader.id()
    }

    /// The processes alive now that the leader started: those of its group, and every
    /// descendant that left the group (zombies left out).
    pub fn members(&self) -> Vec<u32> {
        family_of(self.id())
    }

    /// Kills every process of the group, and descendants that left it, and reaps the
    /// leader and the guard.
    fn kill(&mut self) {
        let family = self.members();
        // SAFETY: kill(2) takes no memory; a negative pid signals the whole group.
        unsafe { libc::kill(-(self.id() as libc::pid_t), libc::SIGKILL) };
        for pid in family {
            // SAFETY: as above, one process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.leader.wait();
        if let Some((mut guard, mut pipe)) = self.guard.take() {
            // A line (not end of file) tells the guard the group is already dealt with: a
            // group id reused by then must not be killed.
            let _ = pipe.write_all(b"done\n");
            drop(pipe);
            let _ = guard.wait();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The live processes of process group `group` and all their descendants, wherever
/// they moved (zombies, dead but not yet reaped by whoever adopted them, left out).
pub fn family_of(group: u32) -> Vec<u32> {
    let processes = all_processes();
    let mut family: Vec<u32> = processes
        .iter()
        .filter(|process| process.group == group)
        .map(|process| process.pid)
        .collect();
    let mut next = 0;
    while next < family.len() {
        let parent = family[next];
        for process in &processes {
            if process.parent == parent && !family.contains(&process.pid) {
                family.push(process.pid);
            }
        }
        next += 1;
    }
    family.retain(|pid| alive(*pid));
    family
}

/// Whether process `pid` is alive (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|process| process.state != 'Z')
}

/// Waits up to `patience` until none of `pids` is alive; answers those still alive.
pub fn wait_gone(pids: &[u32], patience: Duration) -> Vec<u32> {
    let deadline = Instant::now() + patience;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|pid| alive(*pid)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The command line of process `pid`, its arguments joined by spaces.
pub fn command_line(pid: u32) -> String {
    std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

/// What `/proc/PID/stat` says of one process.
struct Stat {
    pid: u32,
    state: char,
    parent: u32,
    group: u32,
}

/// Every process on the machine now.
fn all_processes() -> Vec<Stat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .collect()
}

/// Process `pid`'s state, parent and group, if it exists.
fn stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: read after the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    Some(Stat {
        pid,
        state: fields.next()?.chars().next()?,
        parent: fields.next()?.parse().ok()?,
        group: fields.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leader whose child would outlive it alone: `sh` starts a `sleep`, and both are in
    /// the group.
    fn sleeper_family() -> Group {
        Group::spawn(
            Command::new("sh")
                .args(["-c", "sleep 300 & sleep 300"])
                .stdout(Stdio::null()),
        )
        .unwrap()
    }

    fn started(group: &Group) -> Vec<u32> {
        let deadline = Instant::now() + crate::PATIENCE;
        loop {
            let members = group.members();
            if members.len() >= 3 || Instant::now() >= deadline {
                return members;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn dropping_a_group_kills_its_grandchildren_too() {
        let group = sleeper_family();
        let members = started(&group);
        assert_eq!(members.len(), 3, "sh and two sleeps: {members:?}");
        drop(group);
        assert_eq!(wait_gone(&members, crate::PATIENCE), Vec::<u32>::new());
    }

    #[test]
    fn a_group_dies_with_a_test_process_that_is_killed() {
        // When the test process dies without running a Drop, the kernel closes its end of
        // the guard's pipe without writing a line: the same as dropping it here.
        let mut guard = Group::spawn(Command::new("sleep").arg("300")).unwrap();
        let (guard_child, pipe) = guard.guard.take().unwrap();
        let members = guard.members();
        assert_eq!(members, vec![guard.id()]);
        drop(pipe); // as the kernel does when the test process dies
        assert_eq!(wait_gone(&members, crate::PATIENCE), Vec::<u32>::new());
        let mut guard_child = guard_child;
        let _ = guard_child.wait();
    }
}
