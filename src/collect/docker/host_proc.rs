//! `zombie_source: host_proc`: zombies found in the host's `/proc` instead of an exec per
//! container, for a canary that shares the host PID namespace (no exec, so the socket proxy needs
//! no `EXEC`/`POST`). A process in state `Z` whose command is `process_name` belongs to the
//! container whose id appears in its **parent's** cgroup (an exited process leaves its cgroup
//! before it is reaped, so its own cgroup no longer names the container). Pids are host pids.
//!
//! It must not write anything, nor follow anything but `/proc/<pid>/stat` and
//! `/proc/<ppid>/cgroup`.

use std::collections::BTreeMap;
use std::path::Path;

/// One `/proc/<pid>/stat` line's fields canary needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The process id.
    pub pid: u32,
    /// The command name (`comm`, without the parentheses).
    pub comm: String,
    /// The state letter (`Z` for a zombie).
    pub state: char,
    /// The parent's pid.
    pub ppid: u32,
}

/// Parses `pid (comm) state ppid …`. The command may itself hold spaces or parentheses, so it
/// runs to the LAST `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line.get(..open)?.trim().parse().ok()?;
    let comm = line.get(open + 1..close)?.to_owned();
    let mut rest = line.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
    })
}

/// Zombie pids of `process_name` per container id in `ids` (every id gets an entry, empty when
/// it has none), read from `proc_root` (`/proc`). `Err` when `proc_root` cannot be listed.
pub fn zombies_by_container(
    proc_root: &Path,
    process_name: &str,
    ids: &[String],
) -> Result<BTreeMap<String, Vec<u32>>, String> {
    let mut out: BTreeMap<String, Vec<u32>> =
        ids.iter().map(|id| (id.clone(), Vec::new())).collect();
    let entries = std::fs::read_dir(proc_root)
        .map_err(|e| format!("cannot list {}: {e}", proc_root.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process may exit between the listing and the read: skip it, it is gone.
        let Ok(text) = std::fs::read_to_string(proc_root.join(name).join("stat")) else {
            continue;
        };
        let Some(stat) = parse_stat(&text) else {
            continue;
        };
        if stat.state != 'Z' || stat.comm != process_name {
            continue;
        }
        let Ok(cgroup) =
            std::fs::read_to_string(proc_root.join(stat.ppid.to_string()).join("cgroup"))
        else {
            continue;
        };
        if let Some(pids) = ids
            .iter()
            .find(|id| cgroup.contains(id.as_str()))
            .and_then(|id| out.get_mut(id))
        {
            pids.push(stat.pid);
        }
    }
    for pids in out.values_mut() {
        pids.sort_unstable();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_odd_commands() {
        let s = parse_stat("4242 (claude) Z 17 4242 4242 0 -1 4227660 0 0").unwrap();
        assert_eq!(
            (s.pid, s.comm.as_str(), s.state, s.ppid),
            (4242, "claude", 'Z', 17)
        );
        let s = parse_stat("7 (a) b) (c) S 1 7 7 0").unwrap();
        assert_eq!((s.comm.as_str(), s.state, s.ppid), ("a) b) (c", 'S', 1));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("x (claude) Z 1"), None);
    }

    #[test]
    fn zombies_are_attributed_by_the_parents_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let write = |pid: &str, stat: &str, cgroup: &str| {
            let p = dir.path().join(pid);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("stat"), stat).unwrap();
            std::fs::write(p.join("cgroup"), cgroup).unwrap();
        };
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        write(
            "100",
            "100 (sleep) S 1 100",
            &format!("0::/system.slice/docker-{a}.scope\n"),
        );
        write("101", "101 (claude) Z 100 100", "0::/\n");
        write("102", "102 (node) Z 100 100", "0::/\n");
        write("200", "200 (sleep) S 1 200", &format!("0::/docker/{b}\n"));
        write("201", "201 (claude) S 200 200", "0::/\n");
        write("300", "300 (claude) Z 1 300", "0::/\n");
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        let found = zombies_by_container(dir.path(), "claude", &[a.clone(), b.clone()]).unwrap();
        assert_eq!(found[&a], [101]);
        assert!(found[&b].is_empty());
        assert!(zombies_by_container(&dir.path().join("none"), "claude", &[]).is_err());
    }
}
