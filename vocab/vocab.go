package vocab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Vocab is a map of token id to text. The zero Vocab knows no token.
type Vocab struct {
	text map[int32]string
}

// Load reads a tokenizer.json or an id → text JSON object from path.
func Load(path string) (*Vocab, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vocab: %w", err)
	}
	v, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("vocab: %s: %w", path, err)
	}
	return v, nil
}

// Text is the text of token id; ok false for an id the vocabulary does not have.
func (v *Vocab) Text(id int32) (text string, ok bool) {
	if v == nil {
		return "", false
	}
	text, ok = v.text[id]
	return text, ok
}

// Len is the number of tokens with a text.
func (v *Vocab) Len() int {
	if v == nil {
		return 0
	}
	return len(v.text)
}

// tokenizer is the part of a Hugging Face tokenizer.json that names the tokens.
type tokenizer struct {
	Model *struct {
		Type  string          `json:"type"`
		Vocab json.RawMessage `json:"vocab"`
	} `json:"model"`
	AddedTokens []struct {
		ID      int32  `json:"id"`
		Content string `json:"content"`
	} `json:"added_tokens"`
	Decoder *decoder `json:"decoder"`
}

type decoder struct {
	Type     string    `json:"type"`
	Decoders []decoder `json:"decoders"` // Sequence
	Pattern  struct {
		String string `json:"String"`
	} `json:"pattern"` // Replace
	Content string `json:"content"` // Replace
}

// decoding is how the decoder turns pieces into text.
type decoding struct {
	byteLevel bool              // GPT-2's byte-to-unicode mapping
	replace   map[string]string // Replace and Metaspace: "▁" → " "
}

func (d *decoder) collect(into *decoding) {
	if d == nil {
		return
	}
	switch d.Type {
	case "ByteLevel":
		into.byteLevel = true
	case "Metaspace":
		into.replace["▁"] = " "
	case "Replace":
		if d.Pattern.String != "" {
			into.replace[d.Pattern.String] = d.Content
		}
	case "Sequence":
		for i := range d.Decoders {
			d.Decoders[i].collect(into)
		}
	}
}

// Parse reads a tokenizer.json (an object with "model") or an id → text JSON object.
func Parse(data []byte) (*Vocab, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("want a tokenizer.json or a JSON object of token id → text: %w", err)
	}
	if _, ok := probe["model"]; !ok {
		return parsePlain(probe)
	}
	var tk tokenizer
	if err := json.Unmarshal(data, &tk); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	dec := decoding{replace: map[string]string{}}
	tk.Decoder.collect(&dec)
	v := &Vocab{text: map[int32]string{}}
	if m := tk.Model; m != nil && len(m.Vocab) > 0 {
		switch bytes.TrimSpace(m.Vocab)[0] {
		case '{': // BPE, WordPiece, WordLevel: piece → id
			var pieces map[string]int32
			if err := json.Unmarshal(m.Vocab, &pieces); err != nil {
				return nil, fmt.Errorf("tokenizer.json: model.vocab: %w", err)
			}
			for piece, id := range pieces {
				v.text[id] = dec.text(piece)
			}
		case '[': // Unigram: [piece, score] in id order
			var pieces [][]json.RawMessage
			if err := json.Unmarshal(m.Vocab, &pieces); err != nil {
				return nil, fmt.Errorf("tokenizer.json: model.vocab: %w", err)
			}
			for id, p := range pieces {
				var piece string
				if len(p) == 0 || json.Unmarshal(p[0], &piece) != nil {
					return nil, fmt.Errorf("tokenizer.json: model.vocab[%d]: want [piece, score]", id)
				}
				v.text[int32(id)] = dec.text(piece)
			}
		default:
			return nil, fmt.Errorf("tokenizer.json: model.vocab is neither an object nor a list")
		}
	}
	// Added tokens (<|im_start|>, <s>) are written as they are.
	for _, t := range tk.AddedTokens {
		v.text[t.ID] = t.Content
	}
	return v, nil
}

// parsePlain reads {"17": "text", ...}.
func parsePlain(obj map[string]json.RawMessage) (*Vocab, error) {
	v := &Vocab{text: make(map[int32]string, len(obj))}
	for key, raw := range obj {
		id, err := strconv.ParseInt(key, 10, 32)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("key %q: want a token id ≥ 0 (or a tokenizer.json with \"model\")", key)
		}
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return nil, fmt.Errorf("token %d: want a string", id)
		}
		v.text[int32(id)] = text
	}
	return v, nil
}

// text decodes one piece.
func (d decoding) text(piece string) string {
	for from, to := range d.replace {
		piece = strings.ReplaceAll(piece, from, to)
	}
	if !d.byteLevel {
		return piece
	}
	out := make([]byte, 0, len(piece))
	for _, r := range piece {
		if b, ok := unicodeToByte[r]; ok {
			out = append(out, b)
		} else {
			out = append(out, string(r)...)
		}
	}
	return string(out)
}

// unicodeToByte inverts GPT-2's bytes_to_unicode: the printable bytes stand for themselves,
// the others (control characters, space, 0x7f–0xa0, 0xad) for U+0100 onwards in byte order.
var unicodeToByte = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	next := rune(256)
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae
		if printable {
			m[rune(b)] = byte(b)
		} else {
			m[next] = byte(b)
			next++
		}
	}
	return m
}()
