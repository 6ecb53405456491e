//! ChattyAI's model beside llama.cpp on the same file and thread count, in the same run:
//! model load, prompt processing and generation in tokens per second, first token of a
//! short prompt (from scratch, and with its system prompt's cache kept from an earlier
//! prompt, as a running agent has it). `cargo bench -p agency-plugin-chatty-ai --bench generation`
//! (llama.cpp comes from `reference/llama-cpp.sh`, built into `target/` on first use).
//!
//! The prompts are reference.py's: its fixtures file carries them.

use std::{process::Command, time::Instant};

use agency_plugin_chatty_ai::{model::Model, sample::Sampler};
use serde_json::Value;

/// Tokens generated per measure (reference.py's BENCH_TOKENS).
const TOKENS: usize = 128;

/// The story prompt of reference.py (STORY): its greedy answer runs past 128 tokens.
const STORY: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nTell me a long story about a dragon who learns to code.<|im_end|>\n<|im_start|>assistant\n";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let path = agency_tests::models::smollm2();
    let fixtures: Value =
        serde_json::from_str(include_str!("../tests/fixtures/smollm2-llama-cpp.json")).unwrap();
    let prompt_text = |n: usize| fixtures["greedy"][n]["prompt"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let model = Model::load(path).unwrap();
    let load_s = started.elapsed().as_secs_f64();
    let prompt = model.encode(&prompt_text(2).repeat(4)).unwrap();
    let short = model.encode(&prompt_text(0)).unwrap();
    let other = model.encode(&prompt_text(1)).unwrap();
    let story = model.encode(STORY).unwrap();
    let mut session = model.session();
    // Greedy with the default repetition penalty: the story then runs past 128 tokens (the
    // penalty's cost is a few hundred multiplications a token).
    let mut time = |tokens: &[u32], count: usize| {
        let started = Instant::now();
        let out = session
            .generate(tokens, count, &mut Sampler::new(0.0, 0, 1.1))
            .unwrap();
        // A prompt's measure needs no token; the generation's needs all of them.
        assert!(count == 1 || out.len() == count, "the story stopped early");
        started.elapsed().as_secs_f64()
    };
    let (mut prompt_rate, mut generate_rate) = (vec![], vec![]);
    let (mut first_ms, mut kept_ms) = (vec![], vec![]);
    for _ in 0..3 {
        // Each measure but the last starts from scratch, as llama.cpp's do.
        model.forget_beginnings();
        prompt_rate.push(prompt.len() as f64 / time(&prompt, 1));
        model.forget_beginnings();
        let prefill = time(&story, 1);
        model.forget_beginnings();
        generate_rate.push((TOKENS - 1) as f64 / (time(&story, TOKENS) - prefill));
        model.forget_beginnings();
        first_ms.push(time(&short, 1) * 1000.0);
        model.forget_beginnings();
        time(&other, 1);
        kept_ms.push(time(&short, 1) * 1000.0);
    }
    let shared = session.reused();

    let output = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/reference/llama-cpp.sh"
        ))
        .args(["bench", path.to_str().unwrap(), &threads.to_string()])
        .output()
        .expect("bash runs reference/llama-cpp.sh");
    assert!(
        output.status.success(),
        "llama.cpp's bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference: Value = serde_json::from_slice(&output.stdout).unwrap();
    let theirs = |key: &str| reference[key].as_f64().unwrap();
    let ours = [
        load_s,
        median(prompt_rate),
        median(generate_rate),
        median(first_ms),
        median(kept_ms),
    ];
    println!(
        "SmolLM2-135M-Instruct Q4_1, {threads} threads, medians of 3 ({} prompt tokens, {TOKENS} generated)",
        prompt.len()
    );
    println!(
        "{:<26} {:>12} {:>12} {:>8}",
        "", "ChattyAI", "llama.cpp", "ratio"
    );
    let rows = [
        ("model load (s)", "load_s"),
        ("prompt (tokens/s)", "prompt_tok_s"),
        ("generation (tokens/s)", "generate_tok_s"),
        ("first token (ms)", "first_token_ms"),
        ("  system prompt kept (ms)", "first_token_kept_ms"),
    ];
    for ((name, key), ours) in rows.iter().zip(ours) {
        println!(
            "{name:<26} {ours:>12.2} {:>12.2} {:>7.2}x",
            theirs(key),
            ours / theirs(key)
        );
    }
    println!(
        "(system prompt kept: {shared} tokens of {} reused here, {} evaluated before by llama.cpp)",
        short.len(),
        reference["shared_tokens"]
    );
    println!("reference: {}", reference["engine"]);
}
