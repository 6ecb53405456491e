//! ChattyAI's model code against llama.cpp on the same file: the same token ids for a
//! corpus of strings, and the same greedy continuations of chat prompts. The reference
//! figures are `fixtures/smollm2-llama-cpp.json`, written by llama.cpp itself
//! (`reference/llama-cpp.sh fixtures MODEL OUT`).

use agency_plugin_chatty_ai::{model::Model, sample::Sampler};
use serde_json::Value;

/// How many greedy tokens of each prompt must be llama.cpp's exactly.
const SAME_TOKENS: usize = 16;

fn fixtures() -> Value {
    serde_json::from_str(include_str!("fixtures/smollm2-llama-cpp.json")).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn token_ids_are_llama_cpps() {
    let model = Model::load(agency_tests::models::smollm2()).unwrap();
    let fixtures = fixtures();
    let mut wrong = Vec::new();
    for case in fixtures["tokens"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let expected = ids(&case["ids"]);
        let ours = model.encode(text).unwrap();
        if ours != expected {
            wrong.push(format!(
                "{text:?}\n  llama.cpp {expected:?}\n  ours      {ours:?}"
            ));
        }
        // Decoding gives the text back (special tokens are left out of answers only).
        if !text.contains("<|") {
            assert_eq!(model.decode(&ours).unwrap(), text);
        }
    }
    assert!(wrong.is_empty(), "token ids differ:\n{}", wrong.join("\n"));
}

#[test]
fn greedy_answers_are_llama_cpps() {
    let model = Model::load(agency_tests::models::smollm2()).unwrap();
    let mut session = model.session();
    let mut wrong = Vec::new();
    for case in fixtures()["greedy"].as_array().unwrap() {
        let prompt = model.encode(case["prompt"].as_str().unwrap()).unwrap();
        let expected = ids(&case["tokens"]);
        let ours = session
            .generate(&prompt, expected.len().max(1), &mut Sampler::greedy())
            .unwrap();
        let same = ours
            .iter()
            .zip(&expected)
            .take_while(|(a, b)| a == b)
            .count();
        let needed = SAME_TOKENS.min(expected.len());
        if !(same >= needed && (expected.len() >= SAME_TOKENS || ours.len() == expected.len())) {
            wrong.push(format!(
            "prompt {:?}: {same} tokens agree, {needed} needed\n  llama.cpp {expected:?} {:?}\n  ours      {ours:?} {:?}",
            case["prompt"].as_str().unwrap(),
            model.decode(&expected).unwrap(),
            model.decode(&ours).unwrap(),
        ));
        }
        println!("{same} of {} tokens as llama.cpp's", expected.len());
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A prompt that starts as a recent one did starts from that one's cache
/// (`model::prefix`), and answers exactly as when computed from scratch: the same prompt
/// again (all but its last token reused), and a conversation going on (the previous
/// prompt, the answer and a new question).
#[test]
fn prompts_that_begin_alike_reuse_the_cache_and_answer_the_same() {
    let model = Model::load(agency_tests::models::smollm2()).unwrap();
    let mut session = model.session();
    let greedy = fixtures()["greedy"][0].clone();
    let prompt = model.encode(greedy["prompt"].as_str().unwrap()).unwrap();
    let expected = ids(&greedy["tokens"]);
    for run in 0..2 {
        let answer = session
            .generate(&prompt, expected.len(), &mut Sampler::greedy())
            .unwrap();
        assert_eq!(answer, expected, "the same prompt, the same answer");
        if run == 1 {
            assert_eq!(session.reused(), prompt.len() - 1);
        }
    }
    let answer = model.decode(&expected).unwrap();
    let next = model
        .encode(&format!(
            "{}{answer}<|im_end|>\n<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n",
            greedy["prompt"].as_str().unwrap()
        ))
        .unwrap();
    assert!(next.starts_with(&prompt));
    let warm = session.generate(&next, 8, &mut Sampler::greedy()).unwrap();
    assert!(session.reused() >= prompt.len(), "{}", session.reused());
    // From scratch: a model of its own (a copy of the file is another model).
    let copy = std::env::temp_dir().join(format!("smollm2-copy-{}.gguf", std::process::id()));
    std::fs::copy(agency_tests::models::smollm2(), &copy).unwrap();
    let fresh = Model::load(&copy).unwrap();
    let mut cold_session = fresh.session();
    let cold = cold_session
        .generate(&next, 8, &mut Sampler::greedy())
        .unwrap();
    assert_eq!(cold_session.reused(), 0);
    std::fs::remove_file(&copy).unwrap();
    assert_eq!(warm, cold);
}
