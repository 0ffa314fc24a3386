//! Test guest built against the wrong world: its `run` takes a number, so
//! registration must reject it with a clear message.

wit_bindgen::generate!({
    inline: r#"
        package test:wrong@0.1.0;
        world wrong {
            export run: func(input: u32) -> u32;
        }
    "#,
    world: "wrong",
});

struct Wrong;

impl Guest for Wrong {
    fn run(input: u32) -> u32 {
        input + 1
    }
}

export!(Wrong);
