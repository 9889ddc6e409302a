use haul::prelude::*;

#[job]
async fn envoyer_café(to: String) {
    let _ = to;
}

fn main() {}
