package vocab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	byteLevel := `{"model": {"type": "BPE", "vocab": {"Ġthe": 0, "Ċ": 1, "Ã©": 2, "Ã": 3, "<script>": 4, "ġ": 6, "Ń": 7}},
		"added_tokens": [{"id": 5, "content": "<|im_start|>"}], "decoder": {"type": "ByteLevel"}}`
	unigram := `{"model": {"type": "Unigram", "vocab": [["<unk>", 0], ["▁the", -3.5], ["s", -4]]},
		"decoder": {"type": "Metaspace", "replacement": "▁"}}`
	sequence := `{"model": {"type": "BPE", "vocab": {"▁Hello": 0, "<0x0A>": 1}},
		"decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}]}}`
	noDecoder := `{"model": {"type": "WordPiece", "vocab": {"##ing": 7, "Ġx": 8}}}`
	plain := `{"0": "hello", "17": " world", "3": "</td><script>alert(1)</script>"}`
	tests := []struct {
		name string
		json string
		want map[int32]string // id → text; "" with absent[id] means not in the vocabulary
		n    int
	}{
		{"byte-level BPE (GPT-2, Qwen)", byteLevel, map[int32]string{0: " the", 1: "\n", 2: "é", 3: "\xc3", 4: "<script>", 5: "<|im_start|>", 6: "\x7f", 7: "\xad"}, 8},
		{"Unigram with Metaspace", unigram, map[int32]string{0: "<unk>", 1: " the", 2: "s"}, 3},
		{"decoder sequence with Replace", sequence, map[int32]string{0: " Hello", 1: "<0x0A>"}, 2},
		{"no decoder: pieces as they are", noDecoder, map[int32]string{7: "##ing", 8: "Ġx"}, 2},
		{"plain id → text map, hostile text kept", plain, map[int32]string{0: "hello", 17: " world", 3: "</td><script>alert(1)</script>"}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Parse([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if v.Len() != tc.n {
				t.Errorf("%d tokens; want %d", v.Len(), tc.n)
			}
			for id, want := range tc.want {
				if got, ok := v.Text(id); !ok || got != want {
					t.Errorf("token %d: %q (%v); want %q", id, got, ok, want)
				}
			}
			if _, ok := v.Text(99); ok {
				t.Error("token 99 has a text; want none")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"not JSON", `{"0": `, "want a tokenizer.json or a JSON object"},
		{"plain map with a word for a key", `{"zero": "a"}`, `key "zero": want a token id`},
		{"plain map with a number for a text", `{"0": 5}`, "token 0: want a string"},
		{"model.vocab neither object nor list", `{"model": {"vocab": 3}}`, "neither an object nor a list"},
		{"Unigram entry without a piece", `{"model": {"vocab": [[]]}}`, "model.vocab[0]: want [piece, score]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse: %v; want an error with %q", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, []byte(`{"1": "a"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if text, _ := v.Text(1); text != "a" {
		t.Errorf("token 1: %q", text)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.json")); err == nil || !strings.Contains(err.Error(), "vocab:") {
		t.Errorf("Load of an absent file: %v", err)
	}
	var none *Vocab
	if _, ok := none.Text(0); ok || none.Len() != 0 {
		t.Error("a nil Vocab knows a token")
	}
}
