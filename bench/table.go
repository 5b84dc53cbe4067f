package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/entropy-polarity/papo/internal/atomicfile"
)

// Kind is what an Entry of a peers table measured.
type Kind int

const (
	Memory   Kind = iota // a read of memory: GB/s only
	CKernel              // the C roofline of the four sums
	Engine               // papo's engine on a Workload in memory
	EndToEnd             // papo analyze on an IPC file, process start to exit
	PeerKind             // a peer (PyTorch, NumPy) on the engine's float32 Workload
)

var kindNames = [...]string{"memory", "roofline", "papo engine", "papo analyze", "peer"}

func (k Kind) String() string { return kindNames[k] }

// Entry is one row of a peers table.
type Entry struct {
	Kind    Kind
	Name    string // "read (avx2)", "C avx2+fma", "cpu (avx2+fma)", "torch verl-style", …
	Dtype   string // "" for memory reads
	V       int    // 0 for memory reads
	Threads int
	// TokensPerSec is 0 for memory reads; BytesPerSec is the logits (or memory) read per second.
	TokensPerSec, BytesPerSec float64
	Note                      string
}

// logitsPerSec is the entry's rate in logits, which compares rows of different V.
func (e *Entry) logitsPerSec() float64 { return e.TokensPerSec * float64(e.V) }

// Report is one run of `papo bench --peers`.
type Report struct {
	Date, CPU string
	Threads   int // all threads
	// V is the vocabulary of the roofline, the end-to-end file and the peers.
	V       int
	Entries []Entry
}

// ThreadCounts are the thread counts a peers run measures: 1 and all.
func ThreadCounts(all int) []int {
	if all <= 1 {
		return []int{1}
	}
	return []int{1, all}
}

// read is papo's own memory read on threads threads (not a peer's, such as torch.sum).
func (r *Report) read(threads int) (*Entry, bool) {
	for i := range r.Entries {
		e := &r.Entries[i]
		if e.Kind == Memory && e.Threads == threads && strings.HasPrefix(e.Name, "read") {
			return e, true
		}
	}
	return nil, false
}

// find is the first entry of kind with the given dtype, V and threads.
func (r *Report) find(kind Kind, dtype string, v, threads int) (*Entry, bool) {
	for i := range r.Entries {
		e := &r.Entries[i]
		if e.Kind == kind && e.Dtype == dtype && e.V == v && e.Threads == threads {
			return e, true
		}
	}
	return nil, false
}

// KeepFaster adds e, or where the report has an entry of e's kind, name, dtype, V and threads
// already, keeps the faster of the two: a measurement repeated to be less at the mercy of the
// machine's noise.
func (r *Report) KeepFaster(e Entry) {
	for i := range r.Entries {
		o := &r.Entries[i]
		if o.Kind == e.Kind && o.Name == e.Name && o.Dtype == e.Dtype && o.V == e.V && o.Threads == e.Threads {
			if e.TokensPerSec > o.TokensPerSec {
				*o = e
			}
			return
		}
	}
	r.Entries = append(r.Entries, e)
}

// roofline is the best C kernel on threads threads.
func (r *Report) roofline(threads int) (*Entry, bool) {
	var best *Entry
	for i := range r.Entries {
		e := &r.Entries[i]
		if e.Kind == CKernel && e.Threads == threads && (best == nil || e.logitsPerSec() > best.logitsPerSec()) {
			best = e
		}
	}
	return best, best != nil
}

// papo is what a peer is compared with: papo analyze end to end on float32 at the peers' V,
// else the engine on float32 there.
func (r *Report) papo(threads int) (*Entry, bool) {
	if e, ok := r.find(EndToEnd, "float32", r.V, threads); ok {
		return e, true
	}
	return r.find(Engine, "float32", r.V, threads)
}

// FractionOfRoofline is e's logits/s over the best C kernel's on as many threads.
func (r *Report) FractionOfRoofline(e *Entry) (float64, bool) {
	c, ok := r.roofline(e.Threads)
	if !ok || e.TokensPerSec == 0 || c.logitsPerSec() == 0 {
		return 0, false
	}
	return e.logitsPerSec() / c.logitsPerSec(), true
}

// FractionOfRead is e's bytes/s over the memory read on as many threads.
func (r *Report) FractionOfRead(e *Entry) (float64, bool) {
	m, ok := r.read(e.Threads)
	if !ok || e.Kind == Memory || e.BytesPerSec == 0 {
		return 0, false
	}
	return e.BytesPerSec / m.BytesPerSec, true
}

// Speedup is papo's tokens/s over the peer e's on as many threads.
func (r *Report) Speedup(e *Entry) (float64, bool) {
	p, ok := r.papo(e.Threads)
	if e.Kind != PeerKind || !ok || e.TokensPerSec == 0 {
		return 0, false
	}
	return p.TokensPerSec / e.TokensPerSec, true
}

func optional(format string, x float64, ok bool) string {
	if !ok {
		return ""
	}
	return fmt.Sprintf(format, x)
}

func rate(x float64) string {
	if x == 0 {
		return ""
	}
	return commas(x)
}

// commas writes x rounded to an integer with thousands separators (12,345).
func commas(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Markdown writes the report as one table.
func (r *Report) Markdown(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "| what | name | dtype | V | threads | tokens/s | GB/s | %% of C roofline | %% of memory read | papo ÷ it | note |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i := range r.Entries {
		e := &r.Entries[i]
		v := ""
		if e.V > 0 {
			v = fmt.Sprint(e.V)
		}
		fr, okr := r.FractionOfRoofline(e)
		fm, okm := r.FractionOfRead(e)
		sp, oks := r.Speedup(e)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s | %.2f | %s | %s | %s | %s |\n",
			e.Kind, e.Name, e.Dtype, v, e.Threads, rate(e.TokensPerSec), e.BytesPerSec/1e9,
			optional("%.0f %%", 100*fr, okr), optional("%.0f %%", 100*fm, okm), optional("%.1f×", sp, oks), e.Note)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// recordSection heads the table of bench/RESULTS.md that AppendRecord adds rows to.
const recordSection = "## papo bench --peers"

const recordHeader = `| date | CPU | threads | memory read GB/s | C roofline tokens/s | papo engine f32 | papo analyze f32 (end to end) | analyze bf16 / f16 | torch verl-style (papo ÷ it) | torch TRL-style | NumPy |
|---|---|---|---|---|---|---|---|---|---|---|
`

// RecordRows are the report's rows for the results table: one per thread count.
func (r *Report) RecordRows() []string {
	var rows []string
	for _, n := range ThreadCounts(r.Threads) {
		cell := func(kind Kind, dtype string) string {
			e, ok := r.find(kind, dtype, r.V, n)
			if !ok {
				return "–"
			}
			s := commas(e.TokensPerSec)
			if f, ok := r.FractionOfRoofline(e); ok && kind != CKernel {
				s += fmt.Sprintf(" (%.0f %%)", 100*f)
			}
			return s
		}
		peer := func(name string) string {
			for i := range r.Entries {
				e := &r.Entries[i]
				if e.Kind == PeerKind && e.Name == name && e.Threads == n && e.TokensPerSec > 0 {
					sp, _ := r.Speedup(e)
					return fmt.Sprintf("%s (%.1f×)", commas(e.TokensPerSec), sp)
				}
			}
			return "–"
		}
		read := "–"
		if m, ok := r.read(n); ok {
			read = fmt.Sprintf("%.1f", m.BytesPerSec/1e9)
		}
		c := "–"
		if e, ok := r.roofline(n); ok {
			c = fmt.Sprintf("%s (%s)", commas(e.TokensPerSec), strings.TrimPrefix(e.Name, "C "))
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %d | %s | %s | %s | %s | %s / %s | %s | %s | %s |",
			r.Date, r.CPU, n, read, c, cell(Engine, "float32"), cell(EndToEnd, "float32"),
			cell(EndToEnd, "bfloat16"), cell(EndToEnd, "float16"),
			peer("torch verl-style"), peer("torch TRL-style"), peer("NumPy")))
	}
	return rows
}

// AppendRecord adds the report's rows to the table under "## papo bench --peers" in the
// Markdown file at path (bench/RESULTS.md), creating the section at the end if it is missing.
// The file is replaced atomically.
func (r *Report) AppendRecord(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	out := insertRows(string(data), r.RecordRows())
	if err := atomicfile.WriteFile(path, []byte(out)); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return nil
}

// insertRows puts rows after the last row of the table that follows recordSection in doc.
func insertRows(doc string, rows []string) string {
	add := strings.Join(rows, "\n") + "\n"
	lines := strings.SplitAfter(doc, "\n")
	sec := -1
	for i, l := range lines {
		if strings.TrimRight(l, "\n") == recordSection {
			sec = i
			break
		}
	}
	if sec < 0 {
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		return doc + "\n" + recordSection + "\n\nOne row per thread count and run, appended by `papo bench --peers` (V = 151,936, float32 unless named; " +
			"tokens/s, with the fraction of the best C roofline kernel on as many threads, and papo analyze's speed over each peer's).\n\n" +
			recordHeader + add
	}
	// The end of the first table after the section heading, or the next heading.
	end, inTable := len(lines), false
	for i := sec + 1; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "|") {
			inTable = true
			continue
		}
		if inTable || strings.HasPrefix(l, "#") {
			end = i
			break
		}
	}
	head, rest := strings.Join(lines[:end], ""), strings.Join(lines[end:], "")
	if !inTable {
		head = strings.TrimRight(head, "\n") + "\n\n"
		add = recordHeader + add
		if rest != "" {
			add += "\n"
		}
	}
	if head != "" && !strings.HasSuffix(head, "\n") {
		head += "\n"
	}
	return head + add + rest
}
