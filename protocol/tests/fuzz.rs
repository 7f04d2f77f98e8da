//! Bounded fuzzing of every decoder that takes bytes from the network: frames, the handshake,
//! requests, replies and values. Arbitrary bytes, mutated valid frames and length prefixes
//! claiming huge sizes must give typed errors — no panic, no stack overflow — and no single
//! allocation may exceed what the input could justify (a counting global allocator measures
//! the largest one).
//!
//! One test function, so no other test in this binary allocates while one is measured.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use push_protocol::frame::{self, Kind, MAX_CLIENT_FRAME};
use push_protocol::{codec, Hello, Op, Outcome, ReadMode, Reply, Role, Value};

/// The system allocator, remembering the largest single request since the last reset.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarding the caller's request unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns the largest single allocation it made.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.store(0, Ordering::Relaxed);
    f();
    LARGEST.load(Ordering::Relaxed)
}

/// Reads every frame from `bytes` as a node would (client limit) on a current-thread runtime.
fn read_all_frames(rt: &tokio::runtime::Runtime, bytes: &[u8]) {
    rt.block_on(async {
        let mut input = bytes;
        for _ in 0..64 {
            match frame::read_frame(&mut input, MAX_CLIENT_FRAME).await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    });
}

/// Decodes `payload` as every message a node or client accepts from the network.
fn decode_everything(payload: &[u8]) {
    let _ = codec::decode::<Hello>(payload);
    let _ = codec::decode::<Op>(payload);
    let _ = codec::decode::<Outcome>(payload);
    let _ = codec::decode::<Value>(payload);
    let _ = codec::decode::<push_protocol::ErrorBody>(payload);
    let _ = codec::decode::<push_protocol::Welcome>(payload);
}

/// Valid payloads to mutate.
fn samples() -> Vec<Vec<u8>> {
    let hello = Hello {
        magic: *b"PUSH",
        protocol: 1,
        token: "secret-token".into(),
        role: Role::Client,
        client: "fuzz".into(),
    };
    let ops = [
        Op::Ping,
        Op::KvSet {
            map: "m".into(),
            key: "k".into(),
            value: Value::List(vec![
                Value::Int(7),
                Value::Str("text".into()),
                Value::Dict(vec![(Value::Bytes(vec![1, 2, 3]), Value::Float(1.5))]),
            ]),
        },
        Op::KvGet {
            map: "m".into(),
            key: "k".into(),
            read: ReadMode::Stale,
        },
        Op::QueuePut {
            queue: "q".into(),
            values: vec![Value::Int(1), Value::None, Value::Bool(true)],
        },
        Op::Forwarded {
            hops: 1,
            op: Box::new(Op::KvCas {
                map: "m".into(),
                key: "k".into(),
                expected: None,
                new: Some(Value::Int(2)),
            }),
        },
    ];
    let mut out = vec![codec::encode(&hello).expect("encode")];
    out.extend(ops.iter().map(|op| codec::encode(op).expect("encode")));
    out.push(
        codec::encode(&Outcome::Ok(Reply::Keys(vec!["a".into(), "b".into()]))).expect("encode"),
    );
    out
}

/// A mutation of a valid payload: flip, overwrite, insert or cut bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Cut(usize),
    /// Overwrite 9 bytes with a varint claiming a huge length.
    HugeLength(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        any::<usize>().prop_map(Mutation::HugeLength),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if let Some(x) = bytes.get_mut(i % len) {
                    *x ^= b;
                }
            }
            Mutation::Set(i, b) => {
                if let Some(x) = bytes.get_mut(i % len) {
                    *x = *b;
                }
            }
            Mutation::Insert(i, b) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Cut(i) => bytes.truncate(i % len),
            Mutation::HugeLength(i) => {
                let at = i % len;
                let mut huge = vec![253u8];
                huge.extend_from_slice(&(u64::MAX / 3).to_le_bytes());
                let end = (at + huge.len()).min(bytes.len());
                bytes.splice(at..end, huge);
            }
        }
    }
    bytes
}

/// Bytes of `Op::Forwarded` wrapped `depth` times around `Op::Ping`.
fn nested_forwards(depth: usize) -> Vec<u8> {
    let one = codec::encode(&Op::Forwarded {
        hops: 0,
        op: Box::new(Op::Ping),
    })
    .expect("encode");
    let ping = codec::encode(&Op::Ping).expect("encode");
    let prefix = &one[..one.len() - ping.len()];
    let mut bytes = prefix.repeat(depth);
    bytes.extend_from_slice(&ping);
    bytes
}

/// Allocations a decode of `len` input bytes may make: serde preallocates at most 1 MiB per
/// sequence whatever length a prefix claims, and the payload limit caps strings and bytes.
fn decode_budget(len: usize) -> usize {
    (1 << 20).max(2 * len + 1024)
}

/// Allocations reading frames from `len` bytes may make: the first body reservation, then
/// growth as bytes arrive.
fn frame_budget(len: usize) -> usize {
    (64 << 10).max(2 * len + 1024)
}

#[test]
fn decoders_survive_hostile_input_with_bounded_allocations() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cases = |n| Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    };

    // Arbitrary bytes, as payloads and as a frame stream.
    let mut runner = TestRunner::new(cases(2000));
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
            let big = largest_allocation(|| decode_everything(&bytes));
            prop_assert!(big <= decode_budget(bytes.len()), "decode allocated {big}");
            let big = largest_allocation(|| read_all_frames(&rt, &bytes));
            prop_assert!(big <= frame_budget(bytes.len()), "frames allocated {big}");
            Ok(())
        })
        .expect("arbitrary bytes");

    // Mutated valid payloads, bare and inside request frames.
    let samples = samples();
    let mut runner = TestRunner::new(cases(3000));
    runner
        .run(
            &(
                0..samples.len(),
                proptest::collection::vec(mutation(), 1..4),
            ),
            |(which, mutations)| {
                let payload = mutate(samples[which].clone(), &mutations);
                let big = largest_allocation(|| decode_everything(&payload));
                prop_assert!(
                    big <= decode_budget(payload.len()),
                    "decode allocated {big}"
                );
                let framed = frame::encode_frame(Kind::Request, &[&7u64.to_be_bytes(), &payload]);
                let stream = mutate(framed, &mutations[..1]);
                let big = largest_allocation(|| read_all_frames(&rt, &stream));
                prop_assert!(big <= frame_budget(stream.len()), "frames allocated {big}");
                Ok(())
            },
        )
        .expect("mutated frames");

    // Frame headers claiming huge sizes, followed by little or nothing.
    let mut runner = TestRunner::new(cases(500));
    runner
        .run(
            &(any::<u32>(), proptest::collection::vec(any::<u8>(), 0..64)),
            |(len, tail)| {
                let mut stream = len.to_be_bytes().to_vec();
                stream.extend_from_slice(&tail);
                let big = largest_allocation(|| read_all_frames(&rt, &stream));
                prop_assert!(big <= frame_budget(stream.len()), "frames allocated {big}");
                Ok(())
            },
        )
        .expect("huge length prefixes");

    // A request nesting forwards a million deep must be refused, not overflow the stack.
    let deep = nested_forwards(1_000_000);
    let err = codec::decode::<Op>(&deep).expect_err("a million nested forwards");
    assert!(err.to_string().contains("nested"), "{err}");
    // Honest nesting (a forward of a forward) still decodes.
    assert!(matches!(
        codec::decode::<Op>(&nested_forwards(3)),
        Ok(Op::Forwarded { .. })
    ));
}
