//! `name` sets the stored kind; the struct keeps the function's name.
#![deny(warnings)]

use haul::prelude::*;

#[job(name = "reports:nightly")]
async fn build_report(day: u32) {
    let _ = day;
}

fn main() {
    let _ = BuildReport::new(3);
}
