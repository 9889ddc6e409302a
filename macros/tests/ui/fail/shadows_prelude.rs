use haul::prelude::*;

#[job]
async fn snooze(minutes: u64) {
    let _ = minutes;
}

fn main() {}
