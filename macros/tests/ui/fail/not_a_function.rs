use haul::prelude::*;

#[job]
struct SendEmail {
    to: String,
}

fn main() {}
