//! A `#[cfg]` below `#[job]` applies to everything generated.
#![deny(warnings)]

use haul::prelude::*;

#[job]
#[cfg(any())]
async fn compiled_out(missing: DoesNotExist) {}

#[job]
#[cfg(all())]
async fn compiled_in() {}

fn main() {
    let _ = CompiledIn::new();
}
