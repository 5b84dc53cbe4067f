package polarity

import "fmt"

// The messages of the logits data errors, shared by every engine and the reference so that
// they report a bad row identically.

func nanAt(j int) string {
	return fmt.Sprintf("NaN at index %d (want finite logits; −Inf is allowed)", j)
}

func posInfAt(j int) string {
	return fmt.Sprintf("+Inf at index %d (want finite logits; −Inf is allowed)", j)
}

func noFiniteLogit(v int) string {
	return fmt.Sprintf("no finite logit: all %d are −Inf, so the row has no distribution", v)
}

// LogitsError is the *RowError an engine returns for row i whose logit at index j is NaN or +Inf
// (x is that logit), or, with j < 0, for a row without any logit above −Inf (v is the row length).
func LogitsError(i, j int, x float32, v int) *RowError {
	e := &RowError{Row: i, Column: "logits"}
	switch {
	case j < 0:
		e.Msg = noFiniteLogit(v)
	case x != x:
		e.Msg = nanAt(j)
	default:
		e.Msg = posInfAt(j)
	}
	return e
}
