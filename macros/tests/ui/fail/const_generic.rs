use haul::prelude::*;

#[job]
async fn batch<const N: usize>(ids: [u64; N]) {
    let _ = ids;
}

fn main() {}
