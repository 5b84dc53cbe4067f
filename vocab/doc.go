// Package vocab maps token ids to their text for people reading papo's reports, where a
// token id alone says little. It reads a Hugging Face tokenizer.json (the model's vocabulary,
// a map of token → id for BPE, WordPiece and WordLevel or a list of pieces for Unigram, and
// the added tokens) or a plain JSON object of id → text. Byte-level BPE pieces (GPT-2, Llama 3,
// Qwen: "Ġthe") are decoded to the bytes they stand for, and SentencePiece's "▁" to a space,
// when the tokenizer's decoder says so; a piece that is not whole UTF-8 keeps its bytes, for
// the caller to escape. The texts come from a file: treat them as untrusted (the report's
// HTML escapes them).
package vocab
