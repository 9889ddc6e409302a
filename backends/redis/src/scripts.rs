//! The Lua scripts (`lua/*.lua`), loaded once per server and run with `EVALSHA`;
//! `redis::Script` loads a script again when the server answers `NOSCRIPT` (after a
//! restart or `SCRIPT FLUSH`).

use std::sync::LazyLock;

use haul_core::Timestamp;
use redis::{Cmd, Script, ScriptInvocation};

use crate::{
    codec::clock_arg,
    keys::{GROUP_SIZE, Keys, QueueKeys},
};

/// A script that starts with the helpers of `lua/lib.lua`.
macro_rules! with_lib {
    ($file:literal) => {
        Script::new(concat!(include_str!("../lua/lib.lua"), include_str!(concat!("../lua/", $file))))
    };
}

/// Every script, each hashed once.
pub(crate) struct Scripts {
    pub(crate) enqueue: Script,
    pub(crate) reserve: Script,
    pub(crate) claim: Script,
    pub(crate) report: Script,
    pub(crate) heartbeat: Script,
    pub(crate) promote: Script,
    pub(crate) rescue: Script,
    pub(crate) prune: Script,
    pub(crate) cancel: Script,
    pub(crate) retry: Script,
    pub(crate) delete: Script,
    pub(crate) pause: Script,
    pub(crate) resume: Script,
    pub(crate) set_limits: Script,
    pub(crate) beat_worker: Script,
    pub(crate) remove_worker: Script,
    pub(crate) list_workers: Script,
    pub(crate) acquire_leadership: Script,
    pub(crate) release_leadership: Script,
    pub(crate) leader: Script,
    pub(crate) save_periodic: Script,
    pub(crate) record_throughput: Script,
    pub(crate) throughput: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: with_lib!("enqueue.lua"),
    reserve: with_lib!("reserve.lua"),
    claim: with_lib!("claim.lua"),
    report: with_lib!("report.lua"),
    heartbeat: with_lib!("heartbeat.lua"),
    promote: with_lib!("promote.lua"),
    rescue: with_lib!("rescue.lua"),
    prune: with_lib!("prune.lua"),
    cancel: with_lib!("cancel.lua"),
    retry: with_lib!("retry.lua"),
    delete: with_lib!("delete.lua"),
    pause: Script::new(include_str!("../lua/pause.lua")),
    resume: Script::new(include_str!("../lua/resume.lua")),
    set_limits: Script::new(include_str!("../lua/set_limits.lua")),
    beat_worker: with_lib!("beat_worker.lua"),
    remove_worker: Script::new(include_str!("../lua/remove_worker.lua")),
    list_workers: with_lib!("list_workers.lua"),
    acquire_leadership: with_lib!("acquire_leadership.lua"),
    release_leadership: Script::new(include_str!("../lua/release_leadership.lua")),
    leader: with_lib!("leader.lua"),
    save_periodic: with_lib!("save_periodic.lua"),
    record_throughput: with_lib!("record_throughput.lua"),
    throughput: Script::new(include_str!("../lua/throughput.lua")),
});

/// The scripts.
pub(crate) fn scripts() -> &'static Scripts {
    &SCRIPTS
}

/// An invocation of a per-queue script with the common head of `lua/lib.lua`: the
/// clock, the channel, the global keys when `global` (jobs index, queue set, unique
/// index), then the groups of `queues`. The caller appends the script's own arguments.
pub(crate) fn with_head<'a>(
    script: &'a Script,
    keys: &Keys,
    now: Option<Timestamp>,
    global: bool,
    queues: &[&QueueKeys],
) -> ScriptInvocation<'a> {
    let (script_keys, head) = head(keys, now, global, queues);
    let mut call = script.prepare_invoke();
    for key in script_keys {
        call.key(key);
    }
    for arg in head {
        call.arg(arg);
    }
    call
}

/// The `EVALSHA` command of a per-queue script with the common head, as [`with_head`]
/// builds its invocation, for sending many in one round trip (`RedisStorage::run_all`
/// loads the script when the server answers `NOSCRIPT`). The caller appends the
/// script's own arguments.
pub(crate) fn head_command(
    script: &Script,
    keys: &Keys,
    now: Option<Timestamp>,
    global: bool,
    queues: &[&QueueKeys],
) -> Cmd {
    let (script_keys, head) = head(keys, now, global, queues);
    let mut command = redis::cmd("EVALSHA");
    command.arg(script.get_hash()).arg(script_keys.len()).arg(script_keys).arg(head);
    command
}

/// The keys and the head arguments of a per-queue script (see `lua/lib.lua`).
fn head(keys: &Keys, now: Option<Timestamp>, global: bool, queues: &[&QueueKeys]) -> (Vec<String>, Vec<String>) {
    let mut script_keys = Vec::with_capacity(3 + queues.len() * GROUP_SIZE);
    if global {
        script_keys.extend([keys.jobs(), keys.queues(), keys.unique()]);
    }
    for queue in queues {
        script_keys.extend(queue.group());
    }
    let mut head = Vec::with_capacity(4 + queues.len() * 2);
    head.extend([
        clock_arg(now),
        keys.channel(),
        (if global { "3" } else { "0" }).to_owned(),
        queues.len().to_string(),
    ]);
    for queue in queues {
        head.extend([queue.name().to_owned(), queue.job_prefix()]);
    }
    (script_keys, head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lib_lua_reads_groups_of_the_size_the_crate_passes() {
        let lib = include_str!("../lua/lib.lua");
        assert!(lib.contains(&format!("local GROUP_SIZE = {GROUP_SIZE}\n")), "lib.lua's GROUP_SIZE is {GROUP_SIZE}");
        let queue = Keys::new("p").queue("q");
        assert_eq!(queue.group().count(), GROUP_SIZE);
    }

    #[test]
    fn lib_lua_names_a_key_s_start_set_as_the_crate_does() {
        let lib = include_str!("../lua/lib.lua");
        assert!(lib.contains("  return group.starts .. ':' .. limit_key\n"), "key_starts in lib.lua");
        assert!(lib.contains("starts = KEYS[k + 11]"), "the queue's start set is the group's last key");
        let queue = Keys::new("p").queue("q");
        assert_eq!(queue.key_starts("k"), format!("{}:k", queue.starts()));
    }
}
