//! A job without arguments is an empty braced struct with `new()`.
#![deny(warnings)]

use haul::prelude::*;

#[job]
async fn ping() {}

fn main() {
    let Ping {} = Ping::new();
}
