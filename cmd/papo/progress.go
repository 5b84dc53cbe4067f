package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progress draws a one-line bar on stderr while a long input is processed. It is silent when
// stderr is not a terminal (logs and CI stay clean). The total is the input file's size:
// logits are nearly all of an input's bytes, so logits bytes read over file size is the
// fraction done; for a stream the bar shows the count and rate only.
type progress struct {
	w     io.Writer
	total int64
	start time.Time
	last  time.Time
	shown bool
}

func newProgress(w io.Writer, in string, quiet bool) *progress {
	p := &progress{start: time.Now()}
	f, ok := w.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return p
	}
	p.w = w
	if in != "-" {
		if st, err := os.Stat(in); err == nil && st.Mode().IsRegular() {
			p.total = st.Size()
		}
	}
	return p
}

func (p *progress) update(rows, bytes int64) {
	if p.w == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond || now.Sub(p.start) < time.Second {
		return
	}
	p.last = now
	rate := float64(rows) / now.Sub(p.start).Seconds()
	line := fmt.Sprintf("%d tokens  %.0f tokens/s", rows, rate)
	if p.total > 0 {
		frac := min(float64(bytes)/float64(p.total), 1)
		const width = 30
		done := int(frac * width)
		line = fmt.Sprintf("[%s%s] %3.0f%%  %s", strings.Repeat("=", done), strings.Repeat(" ", width-done), 100*frac, line)
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.shown = true
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
