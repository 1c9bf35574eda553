//! A well-formed component of a foreign world; Conduit must reject it at load.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "wrong", path: "wit" });

    struct Wrong;

    impl Guest for Wrong {
        fn run() -> u32 {
            42
        }
    }

    export!(Wrong);
}
