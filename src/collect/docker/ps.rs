//! Parsing the output of the fixed `ps -eo stat,pid,comm` into the zombie pids of the agent
//! process. Pure text in, pids out: it must not run anything.
//!
//! Every line after the header must be `STAT PID COMMAND` (a state word, an all-digit pid, a
//! command): anything else makes the whole output unreadable, never "no zombies" (a `ps` that
//! printed an error or a different format must not look like a healthy container).

/// The zombie pids (state starting with `Z`, command exactly `process_name`), sorted, or why the
/// output is not what the fixed command prints.
pub fn zombies(output: &str, process_name: &str) -> Result<Vec<u32>, String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let mut columns = header.split_whitespace();
    if columns.next() != Some("STAT") || columns.next() != Some("PID") {
        return Err("ps output has no STAT PID header".to_owned());
    }
    let mut pids = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(stat), Some(pid), Some(comm)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("ps output line {} is not `stat pid comm`", i + 2));
        };
        let Some(pid) = pid
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| pid.parse::<u32>().ok())
            .flatten()
        else {
            return Err(format!("ps output line {} has a non-numeric pid", i + 2));
        };
        // A command with spaces (a thread name) continues in further fields; the agent's
        // command has none, so only an exact one-word match counts.
        if stat.starts_with('Z') && comm == process_name && fields.next().is_none() {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::zombies;

    #[test]
    fn keeps_only_zombies_of_the_agent_process() {
        let out = "STAT PID   COMMAND\nS        1 sleep\nZ        8 claude\nZ+      12 claude\n\
                   Z        9 node\nS       10 claude\nR       11 ps\n";
        assert_eq!(zombies(out, "claude"), Ok(vec![8, 12]));
    }

    #[test]
    fn procps_header_and_spacing_parse() {
        let out = "STAT     PID COMMAND\nSs         1 sh\nZ         42 claude\n";
        assert_eq!(zombies(out, "claude"), Ok(vec![42]));
    }

    #[test]
    fn no_zombies_is_an_empty_list() {
        assert_eq!(
            zombies("STAT PID COMMAND\nS 1 sleep\n", "claude"),
            Ok(vec![])
        );
    }

    #[test]
    fn anything_else_is_unreadable() {
        for bad in [
            "",
            "ps: unknown option -- e\n",
            "STAT PID COMMAND\nZ abc claude\n",
            "STAT PID COMMAND\nZ -4 claude\n",
            "STAT PID COMMAND\nZ 99999999999 claude\n",
            "STAT PID COMMAND\nZ\n",
        ] {
            assert!(
                zombies(bad, "claude").is_err(),
                "{bad:?} must be unreadable"
            );
        }
    }
}
