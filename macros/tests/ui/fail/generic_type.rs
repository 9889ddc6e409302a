use haul::prelude::*;

#[job]
async fn deliver<T: serde::Serialize>(value: T) {
    let _ = value;
}

fn main() {}
