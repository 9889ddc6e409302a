//! Jobs in a nested module and inside a function body.
#![deny(warnings)]

mod outer {
    pub mod inner {
        use haul::prelude::*;

        #[job]
        pub async fn in_a_module(id: u64) {
            let _ = id;
        }
    }
}

fn main() {
    use haul::prelude::*;

    #[job]
    async fn in_a_function(id: u64) {
        let _ = id;
    }

    let _ = (outer::inner::InAModule::new(1), InAFunction::new(2));
}
