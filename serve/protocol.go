package serve

import (
	"crypto/subtle"
	"fmt"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/run"
)

// Request metadata keys: schema metadata of the request stream (docs/PROTOCOL.md). The input
// contract's own keys (papo.temperature, papo.lr, papo.clip_low, papo.clip_high,
// papo.run_id) keep their meaning.
const (
	KeyRequest         = "papo.request"          // analyze (default), reweight or rollback
	KeyRunID           = papoio.MetaRunID        // the run whose state a reweight or rollback uses
	KeyToken           = "papo.token"            // the shared token, when the server requires one
	KeyMethod          = "papo.method"           // reweighting method (overrides papo.config's)
	KeyConfig          = "papo.config"           // JSON object of reweighting parameters (papo --config keys)
	KeyNaturalGradient = "papo.natural_gradient" // "true": the natural-gradient polarity factor
	KeyResetState      = "papo.reset_state"      // "true": start the run afresh
	KeyRollbackTo      = "papo.rollback_to"      // rollback: the first step to forget
	KeyGlobalStats     = "papo.global_stats"     // reweight: JSON array of the steps' global partials rows
	KeyColumns         = "papo.columns"          // analyze, reweight: the reply's columns, comma-separated (default all)
)

// Reply status metadata keys: schema metadata of the status stream that ends every reply.
const (
	KeyStatus    = "papo.status"     // ok or error
	KeyErrorKind = "papo.error_kind" // an ErrorKind
	KeyError     = "papo.error"      // the message
	KeyEngine    = "papo.engine"     // the engine that computed the reply
	KeyTokens    = "papo.tokens"     // token rows in the request
	KeySteps     = "papo.steps"      // steps answered
	KeyCommitted = "papo.committed"  // "true" when the run state now holds the request's steps
	KeyRollback  = "papo.rollback"   // what a re-sent step or a rollback request rolled back
	KeyLastStep  = "papo.last_step"  // the run's last committed step after the request ("" none)
)

// Request kinds.
const (
	Analyze  = "analyze"
	Reweight = "reweight"
	Rollback = "rollback"
	Stats    = "stats" // a data-parallel rank's partials table (papo stats)
)

// ErrorKind classifies a failed request for clients and metrics.
type ErrorKind string

const (
	KindInput      ErrorKind = "input"       // the bytes, the schema or the data break the input contract
	KindRequest    ErrorKind = "request"     // the request metadata is wrong (kind, run id, parameters)
	KindAuth       ErrorKind = "auth"        // missing or wrong token
	KindTooLarge   ErrorKind = "too_large"   // a batch over --max-batch-bytes
	KindState      ErrorKind = "state"       // the run state refused the request (parameters, history)
	KindBusy       ErrorKind = "busy"        // the run's state file is held by another process
	KindShutdown   ErrorKind = "shutdown"    // the server stopped before the request finished
	KindInternal   ErrorKind = "internal"    // a bug or a failure of the server's machine
	KindClientGone ErrorKind = "client_gone" // the client went away mid-request (logged only)
)

// requestError is an error with its kind.
type requestError struct {
	kind  ErrorKind
	err   error
	stack []byte // a recovered panic's stack, for the log only
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

func errorf(kind ErrorKind, format string, args ...any) error {
	return &requestError{kind: kind, err: fmt.Errorf(format, args...)}
}

// validRunID keeps a run id usable as a file name in the state directory: 1–128 ASCII letters,
// digits, '.', '_' or '-', the first a letter or digit (the regular expression
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$, written out: compiling that one cost every papo command
// 0.35 ms at start, GODEBUG=inittrace=1).
func validRunID(s string) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// request is what a request's metadata asks for.
type request struct {
	kind       string
	runID      string
	config     papo.Config
	natural    bool
	reset      bool
	rollbackTo int64
	global     map[int64]papo.StepPartials // papo.global_stats
	columns    []string                    // papo.columns; nil: the whole reply
}

// needsContract reports whether a request stream's schema must follow the input contract: all
// but rollback requests carry token rows.
func needsContract(s *arrow.Schema) bool {
	kind, _ := s.Metadata().GetValue(KeyRequest)
	return strings.TrimSpace(kind) != Rollback
}

// checkToken checks the request's papo.token against token ("": none required).
func checkToken(md arrow.Metadata, token string) error {
	if token == "" {
		return nil
	}
	got, _ := md.GetValue(KeyToken)
	if subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1 {
		return nil
	}
	if got == "" {
		return errorf(KindAuth, "the server requires a token: put it in the request's schema metadata as %s", KeyToken)
	}
	return errorf(KindAuth, "wrong %s", KeyToken)
}

// parseRequest reads the request metadata over the server's defaults.
func parseRequest(md arrow.Metadata, defaults papo.Config, token string) (*request, error) {
	get := func(k string) (string, bool) {
		v, ok := md.GetValue(k)
		return strings.TrimSpace(v), ok
	}
	req := &request{kind: Analyze, config: defaults}
	if err := checkToken(md, token); err != nil {
		return req, err
	}
	if v, ok := get(KeyRequest); ok {
		req.kind = v
	}
	switch req.kind {
	case Analyze, Reweight, Rollback, Stats:
	default:
		return req, errorf(KindRequest, "%s %q: want %s, %s, %s or %s", KeyRequest, req.kind, Analyze, Reweight, Stats, Rollback)
	}
	req.runID, _ = get(KeyRunID)
	if req.kind == Reweight || req.kind == Rollback {
		if req.runID == "" {
			return req, errorf(KindRequest, "a %s request needs %s (the run whose state it uses)", req.kind, KeyRunID)
		}
		if !validRunID(req.runID) {
			return req, errorf(KindRequest, "%s %q: want 1–128 letters, digits, '.', '_' or '-', not starting with '.', '_' or '-'", KeyRunID, req.runID)
		}
	}
	boolKey := func(k string, dst *bool) error {
		v, ok := get(k)
		if !ok {
			return nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errorf(KindRequest, "%s %q: want true or false", k, v)
		}
		*dst = b
		return nil
	}
	if err := boolKey(KeyNaturalGradient, &req.natural); err != nil {
		return req, err
	}
	if err := boolKey(KeyResetState, &req.reset); err != nil {
		return req, err
	}
	if v, ok := get(KeyConfig); ok && v != "" {
		if err := papo.DecodeConfigJSON([]byte(v), &req.config); err != nil {
			return req, errorf(KindRequest, "%s: %v", KeyConfig, err)
		}
	}
	if v, ok := get(KeyMethod); ok {
		req.config.Method = v
	}
	if v, ok := get(KeyGlobalStats); ok && v != "" {
		if req.kind != Reweight {
			return req, errorf(KindRequest, "%s belongs to a reweight request", KeyGlobalStats)
		}
		rows, err := papoio.DecodePartialsJSON([]byte(v))
		if err != nil {
			return req, errorf(KindRequest, "%s (the summed stats tables): %v", KeyGlobalStats, err)
		}
		req.global = run.GlobalPartials(rows)
	}
	if v, ok := get(KeyColumns); ok {
		if req.kind != Analyze && req.kind != Reweight {
			return req, errorf(KindRequest, "%s belongs to an analyze or reweight request (a %s reply has its own columns)", KeyColumns, req.kind)
		}
		for _, name := range strings.Split(v, ",") {
			req.columns = append(req.columns, strings.TrimSpace(name))
		}
	}
	if req.kind == Analyze {
		req.config.Method = papo.MethodNone
	}
	if err := req.config.Validate(); err != nil {
		return req, errorf(KindRequest, "%v", err)
	}
	if req.kind == Rollback {
		v, ok := get(KeyRollbackTo)
		if !ok {
			return req, errorf(KindRequest, "a rollback request needs %s (the first step to forget)", KeyRollbackTo)
		}
		step, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return req, errorf(KindRequest, "%s %q: want an integer step", KeyRollbackTo, v)
		}
		req.rollbackTo = step
	}
	return req, nil
}

// requestKeys are the metadata keys that a reply does not echo (the token above all).
var requestKeys = []string{KeyRequest, KeyToken, KeyMethod, KeyConfig, KeyNaturalGradient, KeyResetState, KeyRollbackTo, KeyGlobalStats, KeyColumns}

// replySchema is the output schema of a request's input schema, without the request keys.
func replySchema(in *arrow.Schema) *arrow.Schema {
	out := papoio.OutputSchema(in)
	md := out.Metadata()
	var keys, values []string
	for i, k := range md.Keys() {
		drop := false
		for _, r := range requestKeys {
			drop = drop || k == r
		}
		if !drop {
			keys, values = append(keys, k), append(values, md.Values()[i])
		}
	}
	kept := arrow.NewMetadata(keys, values)
	return arrow.NewSchema(out.Fields(), &kept)
}
