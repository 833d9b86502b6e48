//! Evaluate-all allocates nothing per flag beyond the answer: one `Vec` per call,
//! whatever the number of flags, rules, segments and rollouts.
//! (`allocation-counter` replaces the global allocator of this test binary and
//! counts the current thread's allocations.)

use flagbelt::eval::{self, Audience};
use flagbelt::ruleset::authoring;

#[test]
fn evaluate_all_allocates_only_the_answer() {
    let yaml = include_str!("../../examples/demo.yaml");
    let (_, rs) = authoring::compile_yaml(yaml, 0).unwrap();
    let contexts = [
        r#"{"targetingKey":"u1","country":"NZ","app":{"version":"2.4.0"},"plan":"pro"}"#,
        r#"{"targetingKey":"u2","email":"a@example.com","signup":"2023-05-01T00:00:00Z"}"#,
        r#"{"targetingKey":42,"beta":true,"app.version":"1.0.0","country":["AU"]}"#,
        r#"{}"#,
    ];
    for text in contexts {
        let ctx = eval::context_from_json(text).unwrap();
        // Warm up once (lazy regex caches and the like), then count.
        let _ = eval::evaluate_all(&rs, &ctx, Audience::All);
        let mut n = 0;
        let info = allocation_counter::measure(|| {
            n = eval::evaluate_all(&rs, &ctx, Audience::All).len();
        });
        assert_eq!(n, rs.flags().len());
        assert_eq!(info.count_total, 1, "{text}: {info:?}");
    }
}
