//! The Lua scripts (`lua/*.lua`), loaded once per server and run with `EVALSHA`;
//! `redis::Script` loads a script again when the server answers `NOSCRIPT` (after a
//! restart or `SCRIPT FLUSH`).

use std::sync::LazyLock;

use haul_core::Timestamp;
use redis::{Script, ScriptInvocation};

use crate::{
    codec::clock_arg,
    keys::{Keys, QueueKeys},
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
    pub(crate) pause: Script,
    pub(crate) resume: Script,
    pub(crate) beat_worker: Script,
    pub(crate) remove_worker: Script,
    pub(crate) list_workers: Script,
    pub(crate) acquire_leadership: Script,
    pub(crate) release_leadership: Script,
    pub(crate) leader: Script,
    pub(crate) save_periodic: Script,
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
    pause: Script::new(include_str!("../lua/pause.lua")),
    resume: Script::new(include_str!("../lua/resume.lua")),
    beat_worker: with_lib!("beat_worker.lua"),
    remove_worker: Script::new(include_str!("../lua/remove_worker.lua")),
    list_workers: with_lib!("list_workers.lua"),
    acquire_leadership: with_lib!("acquire_leadership.lua"),
    release_leadership: Script::new(include_str!("../lua/release_leadership.lua")),
    leader: with_lib!("leader.lua"),
    save_periodic: with_lib!("save_periodic.lua"),
});

/// The scripts.
pub(crate) fn scripts() -> &'static Scripts {
    &SCRIPTS
}

/// An invocation of a per-queue script with the common head of `lua/lib.lua`: the
/// clock, the channel, the global keys when `global` (jobs index, queue set, unique
/// index), then the
/// groups of `queues`. The caller appends the script's own arguments.
pub(crate) fn with_head<'a>(
    script: &'a Script,
    keys: &Keys,
    now: Option<Timestamp>,
    global: bool,
    queues: &[&QueueKeys],
) -> ScriptInvocation<'a> {
    let mut call = script.prepare_invoke();
    if global {
        call.key(keys.jobs()).key(keys.queues()).key(keys.unique());
    }
    for queue in queues {
        for key in queue.group() {
            call.key(key);
        }
    }
    call.arg(clock_arg(now)).arg(keys.channel()).arg(if global { 3 } else { 0 }).arg(queues.len());
    for queue in queues {
        call.arg(queue.name()).arg(queue.job_prefix());
    }
    call
}
