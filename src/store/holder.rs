//! Who holds a lease, and whether that holder still exists: the identity a lease row carries
//! (host name, boot id, pid, process start time) and the pure takeover rule built on it.
//!
//! A holder is written as one text value (the `holder` column, no schema change):
//! `<role>:<nonce> host=<host> boot=<boot id> pid=<pid> start=<start ticks>`. The start time is
//! field 22 of `/proc/<pid>/stat` (clock ticks since boot), so a pid reused by another process
//! reads as a different holder, and the boot id tells a holder from before a reboot. Holders
//! that do not parse (older versions, other platforms) and holders on other hosts are judged by
//! expiry alone.
//!
//! It must not decide anything with I/O inside the rule: [`judge`] is pure and takes the
//! process probe as a function; only [`Identity::current`] and [`probe_pid`] read `/proc`.
//! Known limit: on a `/proc` mounted with `hidepid`, another user's live process looks absent,
//! so daemons sharing a state database must run as the same user (they do: one service user).

use std::sync::OnceLock;

use canary_invariants::Millis;

use super::Lease;

/// A process as a lease names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Host name (`/proc/sys/kernel/hostname`).
    pub host: String,
    /// Boot id (`/proc/sys/kernel/random/boot_id`): pids and start ticks restart at each boot.
    pub boot: String,
    /// Process id.
    pub pid: u32,
    /// Process start time, clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
}

impl Identity {
    /// This process, read once; `None` where `/proc` is not available (then only expiry frees
    /// a lease this process finds).
    pub fn current() -> Option<&'static Identity> {
        static CURRENT: OnceLock<Option<Identity>> = OnceLock::new();
        CURRENT
            .get_or_init(|| {
                let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
                let pid = std::process::id();
                Some(Identity {
                    host: read("/proc/sys/kernel/hostname").filter(|h| !h.is_empty())?,
                    boot: read("/proc/sys/kernel/random/boot_id").filter(|b| !b.is_empty())?,
                    pid,
                    start: probe_pid(pid)?,
                })
            })
            .as_ref()
    }

    /// Reads an identity back from a holder text; `None` when it carries none.
    pub fn parse(holder: &str) -> Option<Identity> {
        let (mut host, mut boot, mut pid, mut start) = (None, None, None, None);
        for field in holder.split_whitespace() {
            match field.split_once('=') {
                Some(("host", v)) => host = Some(v.to_owned()),
                Some(("boot", v)) => boot = Some(v.to_owned()),
                Some(("pid", v)) => pid = v.parse().ok(),
                Some(("start", v)) => start = v.parse().ok(),
                _ => {}
            }
        }
        Some(Identity {
            host: host?,
            boot: boot?,
            pid: pid?,
            start: start?,
        })
    }
}

/// A fresh holder text for `role` (`cycle`, `deliverer`): unique per call (a random nonce), so
/// two leases taken by one process are still two holders.
pub fn holder_text(role: &str) -> String {
    let nonce = rand::random::<u32>();
    match Identity::current() {
        Some(me) => format!(
            "{role}:{nonce:08x} host={} boot={} pid={} start={}",
            me.host, me.boot, me.pid, me.start
        ),
        None => format!("{role}:{nonce:08x} pid={}", std::process::id()),
    }
}

/// The start time (clock ticks since boot) of process `pid`, or `None` when no such process
/// exists (or `/proc` cannot tell).
pub fn probe_pid(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so count from the last
    // `)`; the field after it is field 3, so starttime (field 22) is the 20th.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What a would-be holder may do with the lease row it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No row: take it.
    Absent,
    /// The row expired: take it.
    Expired,
    /// The holder is this same holder: renew it.
    Renew,
    /// The holder was a process on this host that no longer exists: take it over at once.
    HolderDead {
        /// Why: `pid absent`, `pid reused`, `rebooted`.
        why: &'static str,
    },
    /// A live (or unknowable) holder: wait.
    Busy,
}

impl Verdict {
    /// Whether the caller may write its own lease.
    pub fn may_take(&self) -> bool {
        !matches!(self, Verdict::Busy)
    }
}

/// The takeover rule. `me` is the caller's identity (`None`: unknown, expiry only); `probe`
/// says whether a pid on this host exists and since when ([`probe_pid`] in production).
pub fn judge(
    current: Option<&Lease>,
    holder: &str,
    now_ms: Millis,
    me: Option<&Identity>,
    probe: impl Fn(u32) -> Option<u64>,
) -> Verdict {
    let Some(lease) = current else {
        return Verdict::Absent;
    };
    if lease.expires_at_ms < now_ms {
        return Verdict::Expired;
    }
    if lease.holder == holder {
        return Verdict::Renew;
    }
    let (Some(me), Some(them)) = (me, Identity::parse(&lease.holder)) else {
        return Verdict::Busy;
    };
    if them.host != me.host {
        return Verdict::Busy;
    }
    if them.boot != me.boot {
        return Verdict::HolderDead { why: "rebooted" };
    }
    match probe(them.pid) {
        None => Verdict::HolderDead { why: "pid absent" },
        Some(start) if start != them.start => Verdict::HolderDead { why: "pid reused" },
        Some(_) => Verdict::Busy,
    }
}

/// Whether `holder` names this very process (another lease of ours, e.g. an admin-triggered
/// cycle), as opposed to another process.
pub fn is_this_process(holder: &str) -> bool {
    match (Identity::current(), Identity::parse(holder)) {
        (Some(me), Some(them)) => *me == them,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity {
            host: "h1".into(),
            boot: "b1".into(),
            pid: 100,
            start: 5_000,
        }
    }

    fn lease_of(holder: &str) -> Lease {
        Lease {
            holder: holder.into(),
            acquired_at_ms: 1_000,
            expires_at_ms: 2_000,
        }
    }

    const THEM: &str = "cycle:0000beef host=h1 boot=b1 pid=200 start=7000";

    #[test]
    fn identity_round_trips_through_the_holder_text() {
        let parsed = Identity::parse(THEM).unwrap();
        assert_eq!(
            parsed,
            Identity {
                host: "h1".into(),
                boot: "b1".into(),
                pid: 200,
                start: 7_000
            }
        );
        assert_eq!(Identity::parse("pid-12-34"), None, "old holders carry none");
        let mine = holder_text("cycle");
        assert_eq!(Identity::parse(&mine).as_ref(), Identity::current());
        assert!(is_this_process(&mine));
        assert!(!is_this_process(THEM));
        assert_ne!(holder_text("cycle"), mine, "a nonce per lease");
    }

    #[test]
    fn this_process_has_a_start_time() {
        let me = Identity::current().unwrap();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(probe_pid(me.pid), Some(me.start));
    }

    #[test]
    fn takeover_rule() {
        let me = me();
        let alive = |pid: u32| (pid == 200).then_some(7_000);
        let l = lease_of(THEM);
        let j = |lease: Option<&Lease>, now, probe: &dyn Fn(u32) -> Option<u64>| {
            judge(
                lease,
                "cycle:1 host=h1 boot=b1 pid=100 start=5000",
                now,
                Some(&me),
                probe,
            )
        };
        assert_eq!(j(None, 1_500, &alive), Verdict::Absent);
        // A live holder on this host blocks until expiry (boundary: expires_at == now holds).
        assert_eq!(j(Some(&l), 1_500, &alive), Verdict::Busy);
        assert_eq!(j(Some(&l), 2_000, &alive), Verdict::Busy);
        assert_eq!(j(Some(&l), 2_001, &alive), Verdict::Expired);
        // Dead pid: taken over at once, long before expiry.
        assert_eq!(
            j(Some(&l), 1_500, &|_| None),
            Verdict::HolderDead { why: "pid absent" }
        );
        // The pid exists but is another process (started at another time): reused.
        assert_eq!(
            j(Some(&l), 1_500, &|_| Some(9_999)),
            Verdict::HolderDead { why: "pid reused" }
        );
        // Other host: expiry only, whatever the local pid table says.
        let other = lease_of("cycle:1 host=h2 boot=b1 pid=200 start=7000");
        assert_eq!(j(Some(&other), 1_500, &|_| None), Verdict::Busy);
        assert_eq!(j(Some(&other), 2_001, &|_| None), Verdict::Expired);
        // Same host, another boot: every process of that boot is gone.
        let before_reboot = lease_of("cycle:1 host=h1 boot=b0 pid=200 start=7000");
        assert_eq!(
            j(Some(&before_reboot), 1_500, &alive),
            Verdict::HolderDead { why: "rebooted" }
        );
        // Unparseable holder, or unknown own identity: expiry only.
        assert_eq!(
            j(Some(&lease_of("pid-1-2")), 1_500, &|_| None),
            Verdict::Busy
        );
        assert_eq!(judge(Some(&l), "x", 1_500, None, |_| None), Verdict::Busy);
        // The same holder renews.
        assert_eq!(
            judge(Some(&l), THEM, 1_500, Some(&me), |_| None),
            Verdict::Renew
        );
    }
}
