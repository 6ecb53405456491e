"""llama.cpp's answers for ChattyAI's tests and bench (run through llama-cpp.sh).

fixtures MODEL OUT.json
    Token ids of a corpus of strings, and greedy continuations of a few chat prompts, as
    llama.cpp gives them for MODEL: tests/llama_cpp.rs checks ChattyAI against them.
bench MODEL THREADS
    Prompt processing and generation speed of llama.cpp on MODEL with THREADS threads,
    one JSON object on standard output, for benches/generation.rs to print beside its own.
"""

import hashlib
import json
import sys
import time

import llama_cpp
import numpy

# Strings whose token ids must be llama.cpp's: ASCII, digits, spaces, accents, CJK,
# emoji, code, and the chat template's special tokens.
CORPUS = [
    "Hello world",
    "hello, world!",
    " leading space",
    "trailing space ",
    "  two  spaces\tand a tab\nand lines\n\n",
    "12345 and 3.14159, 1,000,000",
    "It's 2026; we'll see what they've done.",
    "Café, naïve, façade, Ångström, Straße",
    "日本語のテキストです。中文也是。",
    "Emoji: 🙂🚀 👩‍💻 and ❤️",
    "fn main() { println!(\"{}\", 40 + 2); }",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "mixed<|im_end|>special",
    "",
]

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

# Chat prompts as ChattyAI renders them from SmolLM2's template (its own tests check the
# rendering), continued greedily.
PROMPTS = [
    SYSTEM + "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    SYSTEM + "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n",
    SYSTEM + "<|im_start|>user\nExplain what an actor is in computer science.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou answer in one sentence.<|im_end|>\n<|im_start|>user\nHow many legs does a spider have?<|im_end|>\n<|im_start|>assistant\n",
]

GREEDY_TOKENS = 32

# The bench: prompt processing on PROMPTS[2] four times (156 tokens), the first token of
# PROMPTS[0] (from scratch, and with the beginning it shares with PROMPTS[1], the system
# prompt, already evaluated), and 128 tokens generated after STORY (whose answer runs
# longer).
STORY = SYSTEM + "<|im_start|>user\nTell me a long story about a dragon who learns to code.<|im_end|>\n<|im_start|>assistant\n"
BENCH_TOKENS = 128


def load(path, threads=2, n_ctx=2048):
    # The KV cache in f32, as candle keeps it (llama.cpp's default, f16, rounds every key
    # and value: greedy answers then part after a few tokens where two are nearly tied).
    return llama_cpp.Llama(
        model_path=path,
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
        verbose=False,
    )


def tokenize(llm, text):
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def last_logits(llm):
    """The logits after the last token evaluated (llama.cpp computes only those)."""
    return numpy.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def greedy(llm, ids, count, stops):
    """The first `count` tokens after `ids`, always the first highest logit."""
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(count):
        token = int(numpy.argmax(last_logits(llm)))
        if token in stops:
            break
        out.append(token)
        llm.eval([token])
    return out


def stop_tokens(llm):
    return {llm.token_eos()} | {
        ids[0] for ids in (tokenize(llm, "<|im_end|>"), tokenize(llm, "<|endoftext|>")) if len(ids) == 1
    }


def fixtures(model, out):
    llm = load(model)
    stops = stop_tokens(llm)
    with open(model, "rb") as file:
        digest = hashlib.sha256(file.read()).hexdigest()
    data = {
        "generated_by": f"llama-cpp-python {llama_cpp.__version__} (plugins/chatty-ai/reference/llama-cpp.sh fixtures)",
        "model_sha256": digest,
        "tokens": [{"text": text, "ids": tokenize(llm, text)} for text in CORPUS],
        "greedy": [
            {"prompt": prompt, "tokens": greedy(llm, tokenize(llm, prompt), GREEDY_TOKENS, stops)}
            for prompt in PROMPTS
        ],
    }
    with open(out, "w", encoding="utf-8") as file:
        json.dump(data, file, ensure_ascii=False, indent=1)
        file.write("\n")


def next_token_s(llm, before, tokens):
    """Seconds from `tokens` (after `before`, evaluated beforehand) to the next token."""
    llm.reset()
    if before:
        llm.eval(before)
    started = time.perf_counter()
    llm.eval(tokens)
    numpy.argmax(last_logits(llm))
    return time.perf_counter() - started


def bench(model, threads):
    started = time.perf_counter()
    llm = load(model, threads)
    load_s = time.perf_counter() - started
    prompt = tokenize(llm, PROMPTS[2] * 4)
    story = tokenize(llm, STORY)
    short = tokenize(llm, PROMPTS[0])
    other = tokenize(llm, PROMPTS[1])
    shared = next(n for n, (a, b) in enumerate(zip(short, other + [-1])) if a != b)
    runs = []
    for _ in range(3):
        prompt_s = next_token_s(llm, [], prompt)
        llm.reset()
        llm.eval(story)
        started = time.perf_counter()
        for _ in range(BENCH_TOKENS):
            llm.eval([int(numpy.argmax(last_logits(llm)))])
        generate_s = time.perf_counter() - started
        first_s = next_token_s(llm, [], short)
        kept_s = next_token_s(llm, short[:shared], short[shared:])
        runs.append((len(prompt) / prompt_s, BENCH_TOKENS / generate_s, first_s * 1000,
                     kept_s * 1000))
    median = lambda index: sorted(run[index] for run in runs)[len(runs) // 2]
    print(json.dumps({
        "engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
        "threads": threads,
        "load_s": load_s,
        "prompt_tokens": len(prompt),
        "prompt_tok_s": median(0),
        "generate_tok_s": median(1),
        "first_token_ms": median(2),
        "shared_tokens": shared,
        "first_token_kept_ms": median(3),
    }))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "fixtures":
        fixtures(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "bench":
        bench(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
