//! Handlers may return nothing, `()`, or `Result<(), E>` for any displayable `E`
//! (including haul's instructions).
#![deny(warnings)]

use haul::prelude::*;

#[job]
async fn nothing() {}

#[job]
async fn unit() -> () {}

#[job]
async fn string_error() -> Result<(), String> {
    Err("boom".to_owned())
}

#[job]
async fn io_error() -> std::io::Result<()> {
    Ok(())
}

#[job]
async fn snoozes() -> Result<(), Snooze> {
    Err(Snooze(Duration::from_secs(5)))
}

fn main() {
    let _ = (Nothing::new(), Unit::new(), StringError::new(), IoError::new(), Snoozes::new());
}
