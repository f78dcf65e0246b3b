//! Token counting with the model's real tokenizer (offline: the vocabularies are compiled in),
//! and the chat-format overhead OpenAI adds per message.

use crate::chat::{ChatRequest, Content};

/// The byte-pair encodings OpenAI models use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GPT-4, GPT-3.5, the v3 embeddings.
    Cl100k,
    /// GPT-4o, GPT-4.1, GPT-5, the o-series; also the default for unknown models.
    O200k,
}

impl Encoding {
    /// The encoding a model name uses; unknown models get o200k, the current family's.
    pub fn for_model(model: &str) -> Encoding {
        let m = model.rsplit('/').next().unwrap_or(model);
        let cl100k = [
            "gpt-4-",
            "gpt-3.5",
            "gpt-35",
            "text-embedding-",
            "davinci-002",
            "babbage-002",
        ];
        if m == "gpt-4" || cl100k.iter().any(|p| m.starts_with(p)) && !m.starts_with("gpt-4o") {
            Encoding::Cl100k
        } else {
            Encoding::O200k
        }
    }

    /// Tokens in `text`.
    pub fn count(self, text: &str) -> usize {
        match self {
            Encoding::Cl100k => bpe_openai::cl100k_base().count(text),
            Encoding::O200k => bpe_openai::o200k_base().count(text),
        }
    }

    /// The token ids of `text`.
    pub fn encode(self, text: &str) -> Vec<u32> {
        match self {
            Encoding::Cl100k => bpe_openai::cl100k_base().encode(text),
            Encoding::O200k => bpe_openai::o200k_base().encode(text),
        }
    }

    /// The text of token ids (as clients such as LangChain send embedding input), or `None`
    /// when an id is not in the vocabulary or the bytes are not UTF-8.
    pub fn decode(self, ids: &[u32]) -> Option<String> {
        let t = match self {
            Encoding::Cl100k => bpe_openai::cl100k_base(),
            Encoding::O200k => bpe_openai::o200k_base(),
        };
        // The tokenizer indexes its table by id unchecked: an unknown id must not reach it.
        let known = t.bpe.num_tokens();
        if ids.iter().any(|&id| id as usize >= known) {
            return None;
        }
        t.decode(ids)
    }
}

/// Tokens per message of chat framing (`<|start|>role<|message|>…<|end|>`).
const PER_MESSAGE: usize = 3;
/// Extra token when a message carries `name`.
const PER_NAME: usize = 1;
/// The reply is primed with `<|start|>assistant<|message|>`.
const REPLY_PRIMING: usize = 3;
/// A floor for each image part (OpenAI's low-detail cost); high detail costs more upstream.
const PER_IMAGE: usize = 85;

/// Prompt tokens of a chat request as the provider will count them (text, names, tool calls,
/// tool definitions; images at their low-detail floor).
pub fn count_prompt(req: &ChatRequest) -> u64 {
    let enc = Encoding::for_model(&req.model);
    prompt_total(req, |t| enc.count(t))
}

/// A ceiling on [`count_prompt`] without running the tokenizer: a token is at least one byte,
/// so a limit the bytes cannot reach needs no count (the size guard's common case).
pub fn prompt_ceiling(req: &ChatRequest) -> u64 {
    prompt_total(req, str::len)
}

/// The chat framing plus `count` of every text the prompt carries.
fn prompt_total(req: &ChatRequest, count: impl Fn(&str) -> usize) -> u64 {
    let mut n = REPLY_PRIMING;
    for m in &req.messages {
        n += PER_MESSAGE + count(m.role.as_str());
        match &m.content {
            Some(Content::Text(t)) => n += count(t),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match &p.text {
                        Some(t) => n += count(t),
                        None if p.kind.starts_with("image") => n += PER_IMAGE,
                        None => {}
                    }
                }
            }
            None => {}
        }
        if let Some(name) = &m.name {
            n += PER_NAME + count(name);
        }
        for call in m.tool_calls.iter().flatten() {
            if let Some(f) = &call.function {
                n += count(&f.name) + count(&f.arguments) + PER_MESSAGE;
            }
        }
    }
    if let Some(tools) = &req.tools {
        for t in tools {
            n += count(&t.to_string());
        }
    }
    n as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_families_pick_their_encoding() {
        assert_eq!(Encoding::for_model("gpt-4o-mini"), Encoding::O200k);
        assert_eq!(Encoding::for_model("gpt-4.1"), Encoding::O200k);
        assert_eq!(Encoding::for_model("o3-mini"), Encoding::O200k);
        assert_eq!(Encoding::for_model("gpt-4"), Encoding::Cl100k);
        assert_eq!(Encoding::for_model("gpt-4-turbo"), Encoding::Cl100k);
        assert_eq!(Encoding::for_model("gpt-3.5-turbo"), Encoding::Cl100k);
        assert_eq!(Encoding::for_model("openai/gpt-4o"), Encoding::O200k);
    }

    #[test]
    fn the_byte_ceiling_is_never_below_the_count() {
        for text in [
            "hello world",
            "Ünïcödé — ✓ 日本語のテキスト 🙂🙂",
            "a\n\n\t  b",
            "",
            "1234567890 ~!@#$%^&*()",
        ] {
            for model in ["gpt-4o", "gpt-4"] {
                let req: ChatRequest = serde_json::from_value(serde_json::json!({
                    "model": model,
                    "messages": [{"role": "user", "content": text, "name": "ann"},
                        {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
                            "function": {"name": "f", "arguments": "{\"x\": 1}"}}]}],
                    "tools": [{"type": "function", "function": {"name": "f"}}]
                }))
                .unwrap();
                assert!(
                    prompt_ceiling(&req) >= count_prompt(&req),
                    "{model}: {text:?}"
                );
            }
        }
    }

    #[test]
    fn counts_match_tiktoken() {
        // Reference counts from tiktoken.
        assert_eq!(Encoding::O200k.count("hello world"), 2);
        assert_eq!(Encoding::Cl100k.count("hello world"), 2);
        assert_eq!(Encoding::O200k.count(""), 0);
    }

    #[test]
    fn chat_overhead_matches_openai_cookbook() {
        // The cookbook's gpt-4o example: two short messages -> 3*2 + content + 3 priming.
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"gpt-4o","messages":[{"role":"system","content":"You are helpful."},
            {"role":"user","content":"hello world"}]}"#,
        )
        .unwrap();
        let expected = 3 + (3 + 1 + 4) + (3 + 1 + 2);
        assert_eq!(count_prompt(&req), expected as u64);
    }

    #[test]
    fn token_ids_decode_back_to_their_text() {
        let text = "Embed this: café, naïve.";
        for enc in [Encoding::Cl100k, Encoding::O200k] {
            assert_eq!(enc.decode(&enc.encode(text)).as_deref(), Some(text));
        }
        assert_eq!(Encoding::Cl100k.decode(&[u32::MAX]), None);
    }
}
